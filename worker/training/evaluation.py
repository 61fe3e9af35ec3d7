"""Raw model outputs for a set of rows (what each task scores: tasks/)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from worker.training.reporting import Cancelled, Reporter
from worker.training.text_data import BatchSource, sorted_batches, to_device

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@torch.inference_mode()
def predict_logits(
    forward: Forward,
    source: BatchSource,
    idx: list[int] | np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    reporter: Reporter,
    phase: str | None = None,
) -> np.ndarray:
    """(len(idx), classes) float32 logits in the order of `idx` (entity tagging: (len(idx),
    width, classes), one per token). Batches run longest first
    for the least padding; `phase`, when given, is reported as progress."""
    idx = np.asarray(idx)
    position = {row: i for i, row in enumerate(idx.tolist())}
    batches = sorted_batches(source.lengths, idx, batch_size)
    logits: np.ndarray | None = None
    for i, rows in enumerate(batches):
        if reporter.should_stop():
            raise Cancelled("cancelled while evaluating")
        inputs = to_device(source.batch(rows), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = forward(inputs).float().cpu().numpy()
        if logits is None:
            # Batches run longest first, so per-token outputs (entity tagging) are never
            # wider than the first; a narrower batch leaves zeros past its own width, which
            # no score reads.
            logits = np.zeros((len(idx), *out.shape[1:]), dtype=np.float32)
        at = [position[r] for r in rows.tolist()]
        if out.ndim == 2:
            logits[at] = out
        else:
            logits[at, : out.shape[1]] = out
        if phase is not None:
            reporter.progress(step=i + 1, total_steps=len(batches), phase=phase)
    assert logits is not None, "predict_logits needs at least one row"
    return logits
