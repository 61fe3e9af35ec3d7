"""A causal language model answering conversations: what the playground, the generate API
and batch files run, from the very folder a user downloads (export/model).

An answer is `model.generate` on the prompt the chat template renders (chat_tokens.prompt_text),
tokenised as training tokenised it: no added special tokens, the template writes the model's
own markers. With temperature 0 that is greedy decoding, so the downloaded folder gives the
playground's answer token for token. Generation stops at the model's stop tokens
(stop_token_ids); a single answer is streamed: generate runs in a thread and hands each new
token over a queue, and the text is decoded whole each time, so every piece shown is a prefix
of the final answer and a character split across tokens is never shown half made.
"""

from __future__ import annotations

import collections.abc
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from queue import Queue
from typing import Any

import torch
from transformers.generation import BaseStreamer, StoppingCriteria, StoppingCriteriaList

from worker.training.chat_request import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    ChatRefused,
    Conversation,
    Sampling,
    checked_conversation,
)
from worker.training.chat_tokens import prepared, prompt_text, stop_token_ids

BATCH_SIZE = 8  # conversations generated together in a batch file
HALF_A_CHARACTER = "\ufffd"  # what decoding shows for a UTF-8 sequence cut between tokens
Pieces = collections.abc.Generator[str, None, None]  # an answer's text pieces, closable


def load_generator(model_dir: str | Path, device: str | None = None) -> Generator:
    """The folder's model in eval mode (fp32 on the CPU; bf16 on a GPU, where it halves the
    memory at no cost to answers worth having) with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(
        str(model_dir), use_fast=True, trust_remote_code=False
    )
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=dtype, use_safetensors=True, trust_remote_code=False
    )
    return Generator(model.to(device).eval(), prepared(tokenizer))


class _TokenQueue(BaseStreamer):
    """Receives generate's tokens (after the prompt, which generate hands over first) and
    passes them to the reading thread; None marks the end."""

    def __init__(self) -> None:
        self.tokens: Queue[list[int] | None] = Queue()
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.tokens.put(value.reshape(-1).tolist())

    def end(self) -> None:
        """The generating thread sends the end itself, after a failure too."""


class _Cancelled(StoppingCriteria):
    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool)


class AnswerStream(Iterator[str]):
    """The pieces of one answer as the model makes them. Once they are all read: `text` (the
    answer decoded whole), `tokens` (its length, without the stop token) and
    `finish_reason` ("stop": the model ended it; "length": cut at max_new_tokens). Closing
    it early stops the generation within a token."""

    def __init__(self, generator: Generator, prompt_ids: list[int], sampling: Sampling) -> None:
        self.text = ""
        self.tokens = 0
        self.finish_reason: str | None = None
        self._pieces: Pieces = self._run(generator, prompt_ids, sampling)

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        self._pieces.close()

    def _run(self, generator: Generator, prompt_ids: list[int], sampling: Sampling) -> Pieces:
        made = _TokenQueue()
        cancel = threading.Event()
        failures: list[BaseException] = []
        inputs = torch.tensor([prompt_ids], device=generator.device)

        def work() -> None:
            try:
                generator.model.generate(
                    input_ids=inputs,
                    attention_mask=torch.ones_like(inputs),
                    streamer=made,
                    stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                    **generator.generate_kwargs(sampling, len(prompt_ids)),
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
                failures.append(exc)
            finally:
                made.tokens.put(None)

        thread = threading.Thread(target=work, name="generate", daemon=True)
        thread.start()
        ids: list[int] = []
        shown = ""
        try:
            while (new := made.tokens.get()) is not None:
                ids += new
                text = generator.decode(generator.answer_ids(ids))
                if text.endswith(HALF_A_CHARACTER) or not text.startswith(shown):
                    continue  # wait for the rest of the character (or a stable prefix)
                if len(text) > len(shown):
                    yield text[len(shown) :]
                    shown = text
        finally:
            cancel.set()
            thread.join()
        if failures:
            raise failures[0]
        answer = generator.answer_ids(ids)
        self.tokens = len(answer)
        self.finish_reason = "stop" if len(answer) < len(ids) else "length"
        self.text = generator.decode(answer)
        if self.text.startswith(shown) and len(self.text) > len(shown):
            yield self.text[len(shown) :]


class Generator:
    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.stop_ids = stop_token_ids(tokenizer, model.generation_config)
        # Prompt plus answer must fit the positions the model was made for.
        self.context: int | None = getattr(model.config, "max_position_embeddings", None)

    def answer_ids(self, made: Sequence[int]) -> list[int]:
        """The answer's tokens among those generated: up to its first stop token (after it,
        a batch row holds only padding)."""
        end = next((j for j, t in enumerate(made) if t in self.stop_ids), len(made))
        return list(made[:end])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """The tokens the model reads before answering; ChatRefused when they leave no room
        for an answer in the model's context."""
        text = prompt_text(self.tokenizer, checked_conversation(conversation))
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.context is not None and len(ids) >= self.context:
            raise ChatRefused(
                f"the conversation is {len(ids):,} tokens and this model reads at most "
                f"{self.context:,}, the answer included: shorten it"
            )
        return ids

    def generate_kwargs(self, sampling: Sampling, prompt_length: int) -> dict[str, Any]:
        """generate's settings; an answer is cut (finish_reason "length") where it would run
        past the model's context."""
        room = self.context - prompt_length if self.context is not None else sampling.max_new_tokens
        stop = {
            "max_new_tokens": min(int(sampling.max_new_tokens), room),
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling.greedy:
            return {**stop, "do_sample": False}
        # top_k=0: only temperature and top_p shape the draw, not a default the user never set.
        return {
            **stop,
            "do_sample": True,
            "temperature": float(sampling.temperature),
            "top_p": float(sampling.top_p),
            "top_k": 0,
        }

    def stream(
        self,
        messages: Conversation,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = DEFAULT_TOP_P,
    ) -> AnswerStream:
        """The answer to `messages` piece by piece (ChatRefused at once for a bad question)."""
        sampling = Sampling(max_new_tokens, temperature, top_p)
        return AnswerStream(self, self.prompt_ids(messages), sampling)

    def answer(self, messages: Conversation, **sampling: Any) -> str:
        stream = self.stream(messages, **sampling)
        for _ in stream:
            pass
        return stream.text

    def answers(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = DEFAULT_TOP_P,
        batch_size: int = BATCH_SIZE,
    ) -> list[str]:
        """One answer per conversation, generated `batch_size` at a time, left-padded (the
        answers must start where every prompt ends). Prompts are grouped by length, so little
        of a batch is padding. Greedy answers equal one-at-a-time ones up to float rounding."""
        sampling = Sampling(max_new_tokens, temperature, top_p)
        prompts = [self.prompt_ids(c) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out = [""] * len(prompts)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in rows)
            ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[r, width - len(prompts[i]) :] = 1
            with torch.inference_mode():
                made = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    **self.generate_kwargs(sampling, width),
                )
            for r, i in enumerate(rows):
                out[i] = self.decode(self.answer_ids(made[r, width:].tolist()))
        return out
