"""Conversations as a causal language model reads them: rendered with the tokenizer's chat
template, tokenised once, and marked so that only the assistant's tokens are learned.

The mask is found on the rendered text rather than guessed from token counts: each
assistant turn's characters are those the template adds between the conversation up to
that turn (with the generation prompt, "<|im_start|>assistant\\n") and the conversation
through it (which ends with the turn's end marker, learned too, so the model learns to
stop). Token j is learned when its first character lies in such a span. Prompts, system
prompts and the template's own markup never contribute to the loss.

A tokenizer without a chat template gets PLAIN_TEMPLATE, a prompt/response format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worker.training.text_data import padded_batch

Conversation = list[dict[str, str]]  # {"role": system | user | assistant, "content": …}

# For base models whose tokenizer has no chat template of its own.
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### Prompt\n{{ m['content'] }}\n\n"
    "{% else %}### Response\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response\n{% endif %}"
)
TOKENIZE_CHUNK = 1024


def load_tokenizer(model_path: str, **kwargs: Any) -> Any:
    """The model's fast tokenizer with a chat template and a padding token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model_path, use_fast=True, trust_remote_code=False, **kwargs
    )
    return prepared(tokenizer)


def prepared(tokenizer: Any) -> Any:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("this model has no fast tokenizer (tokenizer.json); it is not supported")
    if not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prompt_text(tokenizer: Any, conversation: Conversation) -> str:
    """What the model is given to answer: the conversation before its last answer, with
    the template's generation prompt."""
    turns = (
        conversation[:-1]
        if conversation and conversation[-1]["role"] == "assistant"
        else conversation
    )
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def render(tokenizer: Any, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """The whole conversation as text, and the character spans the model learns: every
    assistant turn, or only the last where the template renders earlier turns differently
    once the conversation goes on (templates that drop past reasoning do)."""
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    spans = []
    for i, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(
            conversation[:i], tokenize=False, add_generation_prompt=True
        )
        through = tokenizer.apply_chat_template(conversation[: i + 1], tokenize=False)
        if not (through.startswith(before) and text.startswith(through)):
            last = prompt_text(tokenizer, conversation)
            if not text.startswith(last):
                raise ValueError("the chat template renders this conversation inconsistently")
            return text, [(len(last), len(text))]
        spans.append((len(before), len(through)))
    return text, spans


@dataclass(frozen=True)
class TokenizedChats:
    """Every conversation tokenised once; (rows, max_length) arrays, right-padded:
    input_ids, and learn (1 where the token is an answer's, learned)."""

    arrays: dict[str, np.ndarray]
    lengths: np.ndarray  # tokens per row after truncation
    full_lengths: np.ndarray  # tokens per row before truncation

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return padded_batch(self.arrays, self.lengths, idx)

    def learned_tokens(self, idx: np.ndarray | list[int]) -> int:
        return int(self.arrays["learn"][np.asarray(idx)].sum())


def tokenize_chats(
    tokenizer: Any, conversations: list[Conversation], max_length: int
) -> TokenizedChats:
    """Render, tokenise and mark every conversation; longer ones are cut at max_length
    tokens (their answer's tail is then not learned: the dataset report counts them)."""
    n = len(conversations)
    ids = np.zeros((n, max_length), dtype=np.int32)
    learn = np.zeros((n, max_length), dtype=np.int32)
    lengths = np.zeros(n, dtype=np.int64)
    full = np.zeros(n, dtype=np.int64)
    for start in range(0, n, TOKENIZE_CHUNK):
        chunk = conversations[start : start + TOKENIZE_CHUNK]
        rendered = [render(tokenizer, c) for c in chunk]
        enc = tokenizer(
            [text for text, _ in rendered],
            add_special_tokens=False,  # the template writes whatever markers the model uses
            return_offsets_mapping=True,
        )
        for j, ((_, spans), tokens, offsets) in enumerate(
            zip(rendered, enc["input_ids"], enc["offset_mapping"], strict=True)
        ):
            row = start + j
            full[row] = len(tokens)
            kept = min(len(tokens), max_length)
            lengths[row] = kept
            ids[row, :kept] = tokens[:kept]
            first = np.array([o[0] for o in offsets[:kept]], dtype=np.int64)
            marked = np.zeros(kept, dtype=bool)
            for lo, hi in spans:
                marked |= (first >= lo) & (first < hi)
            learn[row, :kept] = marked
    return TokenizedChats({"input_ids": ids, "learn": learn}, lengths, full)


def conversation_lengths(tokenizer: Any, conversations: list[Conversation]) -> np.ndarray:
    """Each conversation's length in tokens, rendered whole (the dataset report's
    histogram: what a maximum length would cut)."""
    out = np.zeros(len(conversations), dtype=np.int64)
    for start in range(0, len(conversations), TOKENIZE_CHUNK):
        chunk = conversations[start : start + TOKENIZE_CHUNK]
        texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in chunk]
        enc = tokenizer(texts, add_special_tokens=False)
        out[start : start + len(chunk)] = [len(t) for t in enc["input_ids"]]
    return out


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """The tokens that end an answer: the generation config's eos tokens, the tokenizer's
    eos, and the special token the chat template closes an answer with (ChatML's
    <|im_end|>), which some tokenizers do not call eos. An export's generation_config.json
    should list them all, so the download stops where the playground does."""
    ids: list[Any] = []
    configured = getattr(generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    ids.append(tokenizer.eos_token_id)
    marker = "ANSWER-7f3c9e"
    turns = [{"role": "user", "content": "?"}, {"role": "assistant", "content": marker}]
    rendered = tokenizer.apply_chat_template(turns, tokenize=False)
    after = rendered[rendered.index(marker) + len(marker) :] if marker in rendered else ""
    closing = tokenizer(after, add_special_tokens=False)["input_ids"][:1]
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special
    }
    ids += [i for i in closing if i in special]
    return list(dict.fromkeys(i for i in ids if isinstance(i, int)))
