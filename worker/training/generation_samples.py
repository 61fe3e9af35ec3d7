"""Answers written by the model while it trains, for people to read.

People judge generation by reading, not by a loss. A fixed handful of validation prompts is
answered by the base model once, before training, and by the tuned model at the end of each
epoch; `samples.json` in the job's folder holds them beside the reference answers, and the
job page shows them side by side as they come. Greedy decoding throughout, so the answers
differ only because the weights did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from worker.training.atomic_file import replacing
from worker.training.chat_tokens import Conversation, prompt_text, stop_token_ids

SAMPLE_PROMPTS = 4  # validation prompts followed through training
MAX_NEW_TOKENS = 256  # the longest answer any sample or score generates
GENERATE_BATCH = 16


@torch.inference_mode()
def generate_answers(
    model: Any,
    tokenizer: Any,
    conversations: list[Conversation],
    *,
    max_new_tokens: int,
    device: torch.device,
    batch_size: int = GENERATE_BATCH,
) -> list[str]:
    """Greedy answers to each conversation's prompt (its turns before the last answer).
    Prompts are left-padded so each batch's answers start at the same position; batches
    go longest first, so similar lengths share one."""
    prompts = [prompt_text(tokenizer, c) for c in conversations]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    answers = [""] * len(prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            enc = tokenizer(
                [prompts[i] for i in chosen],
                add_special_tokens=False,
                padding=True,
                return_tensors="pt",
            ).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stop_token_ids(tokenizer, model.generation_config),
                )
            new = out[:, enc["input_ids"].shape[1] :]
            for i, tokens in zip(chosen, new, strict=True):
                answers[i] = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = side
    return answers


def answer_budget(tokenizer: Any, references: list[str]) -> int:
    """New tokens enough for the longest reference and a little more, within MAX_NEW_TOKENS:
    generating far past what any answer needs would only cost time."""
    longest = max(
        (len(ids) for ids in tokenizer(references, add_special_tokens=False)["input_ids"]),
        default=0,
    )
    return max(8, min(MAX_NEW_TOKENS, longest + 16))


class SampleBook:
    """samples.json: {"rows": [{index, prompt, reference}], "base": [answers],
    "epochs": {"1": [answers], …}}, written whole at each change."""

    def __init__(self, path: Path, rows: list[dict[str, Any]]) -> None:
        self.path = path
        saved = json.loads(path.read_text()) if path.is_file() else {}
        same = [r["index"] for r in saved.get("rows", [])] == [r["index"] for r in rows]
        self.data: dict[str, Any] = saved if same else {"rows": rows, "base": None, "epochs": {}}

    @property
    def has_base(self) -> bool:
        return self.data.get("base") is not None

    def set_base(self, answers: list[str]) -> None:
        self.data["base"] = answers
        self._write()

    def add_epoch(self, epoch: int, answers: list[str]) -> None:
        self.data["epochs"][str(epoch)] = answers
        self._write()

    def _write(self) -> None:
        with replacing(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, ensure_ascii=False), encoding="utf-8")
