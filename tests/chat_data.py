"""Conversations for the generation tests, and a tiny causal language model to learn them.

The task is a rewrite into a fixed format, learnable in a few steps and checkable by
reading: "Remind me to buy milk on Monday." → "MONDAY: buy milk".
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

CHORES = [
    "buy milk", "call mum", "water the plants", "pay the rent", "book the dentist",
    "walk the dog", "return the library books", "clean the kitchen", "fix the bike",
    "send the invoice", "renew the passport", "bake bread", "wash the car", "reply to Sam",
]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
OPENINGS = ["Remind me to {c} on {d}.", "On {d} I must {c}.", "Don't let me forget to {c} on {d}."]


def reminder_conversations(n: int, *, seed: int = 0) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chore, day = rng.choice(CHORES), rng.choice(DAYS)
        prompt = rng.choice(OPENINGS).format(c=chore, d=day)
        out.append(
            [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": f"{day.upper()}: {chore}"},
            ]
        )
    return out


def write_chat_jsonl(path: Path, conversations: list[list[dict[str, str]]]) -> Path:
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    return path


@functools.cache
def packaged_tokenizer():  # noqa: ANN201 - a transformers tokenizer
    """The packaged SmolLM2's tokenizer (with its ChatML template), read from the GGUF."""
    from transformers import AutoTokenizer

    from worker.training.gguf_import import packaged_smollm2

    folder, name = packaged_smollm2()
    return AutoTokenizer.from_pretrained(str(folder), gguf_file=name)


def make_tiny_causal_lm(folder: Path, *, seed: int = 0, tied: bool = True) -> str:
    """A 2-block Llama with SmolLM2's tokenizer, random weights, saved as a model folder.
    Untied (`tied=False`), its random output layer writes varied tokens rather than echoing
    its input, which tests of decoding need."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = packaged_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)
