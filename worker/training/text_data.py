"""Tokenise once, then cut batches that carry as little padding as possible.

A transformer's cost grows with the padded width of the batch, not with the real tokens in
it, so on texts of varied length two things matter most for speed:
- dynamic padding: each batch is only as wide as its longest row, not `max_length`;
- length grouping: rows of similar length share a batch. Training shuffles rows, cuts them
  into mega-batches of ~50 batches, sorts each mega-batch by length and then shuffles the
  batch order, so batches stay random across the epoch but narrow. Evaluation has no need for
  randomness and simply sorts everything by length.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from worker.training.spec import TextExamples

MEGA_BATCH = 50  # batches per length-sorted group: wide enough to find similar lengths
TOKENIZE_CHUNK = 2048  # rows per tokenizer call: batched for speed, bounded for memory


class BatchSource(Protocol):
    """Rows that can be cut into batches: `lengths` orders them, `batch` builds tensors."""

    @property
    def lengths(self) -> np.ndarray: ...

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class TokenizedTexts:
    """Every row tokenised once; arrays are (rows, max_length) int32, right-padded."""

    arrays: dict[str, np.ndarray]  # input_ids and, where the tokenizer uses them, token_type_ids
    lengths: np.ndarray  # real tokens per row

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return padded_batch(self.arrays, self.lengths, idx)


def padded_batch(
    arrays: dict[str, np.ndarray], lengths: np.ndarray, idx: np.ndarray
) -> dict[str, torch.Tensor]:
    """Rows `idx` of right-padded token arrays, only as wide as their longest row, with the
    attention mask rebuilt from `lengths` rather than stored: one less (rows, max_length)
    array."""
    width = int(lengths[idx].max())
    out = {
        name: torch.from_numpy(array[idx, :width].astype(np.int64))
        for name, array in arrays.items()
    }
    out["attention_mask"] = torch.from_numpy(
        (np.arange(width)[None, :] < lengths[idx, None]).astype(np.int64)
    )
    return out


Tokens = Callable[[], TokenizedTexts]  # every row tokenised, on first call (tokenize_once)


@dataclass(frozen=True)
class FeatureRows:
    """Cached feature vectors, batched like texts (all rows the same length)."""

    features: torch.Tensor  # (rows, hidden) float32 on the CPU

    @property
    def lengths(self) -> np.ndarray:
        return np.ones(len(self.features), dtype=np.int64)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {"features": self.features[torch.from_numpy(idx)]}


def tokenize(tokenizer, examples: TextExamples, max_length: int) -> TokenizedTexts:
    """Tokenise all rows with the fast tokenizer, truncating (pairs longest-first)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("this model has no fast tokenizer (tokenizer.json); it is not supported")
    tokenizer.padding_side = "right"  # batches are cut from the left; padding must trail
    keep = ["input_ids"] + (
        ["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else []
    )
    n = len(examples.texts)
    arrays = {name: np.zeros((n, max_length), dtype=np.int32) for name in keep}
    lengths = np.zeros(n, dtype=np.int64)
    for start in range(0, n, TOKENIZE_CHUNK):
        stop = min(start + TOKENIZE_CHUNK, n)
        pairs = examples.text_pairs[start:stop] if examples.text_pairs is not None else None
        enc = tokenizer(
            examples.texts[start:stop],
            pairs,
            truncation=True,
            max_length=max_length,
            padding="max_length",
            return_tensors="np",
        )
        for name in keep:
            arrays[name][start:stop] = enc[name]
        lengths[start:stop] = enc["attention_mask"].sum(axis=1)
    return TokenizedTexts(arrays=arrays, lengths=lengths)


def tokenize_once(tokenizer, examples: TextExamples, max_length: int) -> Tokens:
    """`tokenize`, put off until first asked for and then kept. A head on cached features
    needs no tokens at all, and tokenising long texts is most of what a job that finds its
    features in the cache would otherwise spend."""
    return functools.cache(lambda: tokenize(tokenizer, examples, max_length))


def length_grouped_batches(
    lengths: np.ndarray, idx: Sequence[int] | np.ndarray, batch_size: int, *, seed: int, epoch: int
) -> list[np.ndarray]:
    """Random batches of similar-length rows; every row exactly once; the same for the
    same (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(np.asarray(idx))
    batches: list[np.ndarray] = []
    span = MEGA_BATCH * batch_size
    for start in range(0, len(order), span):
        group = order[start : start + span]
        group = group[np.argsort(-lengths[group], kind="stable")]
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(
    lengths: np.ndarray, idx: Sequence[int] | np.ndarray, batch_size: int
) -> list[np.ndarray]:
    """Batches in order of decreasing length (evaluation, feature extraction)."""
    rows = np.asarray(idx)
    order = rows[np.argsort(-lengths[rows], kind="stable")]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Pinned memory and asynchronous copies on CUDA, so the copy overlaps the last step."""
    if device.type != "cuda":
        return batch
    return {name: t.pin_memory().to(device, non_blocking=True) for name, t in batch.items()}
