"""Checkpoints: everything a training stage needs to continue where it stopped.

A checkpoint is written at the end of every epoch and, on long epochs, every
`TrainSpec.checkpoint_every_seconds`. It holds the weights that train (and the buffers),
the optimizer's state, the position in the run (epoch, batch within it, step), the best
epoch so far with its weights and validation logits, the early-stopping count and the random
number generators' states — so a resumed run draws the same batches and augmentations, and
its learning-rate schedule (a function of the step) continues exactly.

It is written under a temporary name, flushed to disk and renamed over the previous one, so
a process killed while writing leaves the previous complete checkpoint in place; a file that
does not load is ignored. Loading uses `torch.load(weights_only=True)`: tensors and plain
values only, never arbitrary pickled objects.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from worker.training import job_files
from worker.training.atomic_file import replacing

log = logging.getLogger("tuneboard.worker")

NAME = job_files.CHECKPOINT
FORMAT = 1


def path_in(output_dir: Path) -> Path:
    return job_files.checkpoint(output_dir)


def save(path: Path, state: dict[str, Any]) -> None:
    """Atomically replace `path` with `state` (tensors, dicts, lists and plain values)."""
    with replacing(path, durable=True) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none or it is unreadable."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt, foreign: start afresh
        log.warning("checkpoint %s is unreadable (%s); ignoring it", path, exc)
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None
    return state


def remove(output_dir: Path) -> None:
    """After a job is published its checkpoint is dead weight (often the model twice over)."""
    path_in(output_dir).unlink(missing_ok=True)
    for leftover in output_dir.glob(NAME + ".*.tmp"):
        leftover.unlink(missing_ok=True)


def identity(spec_fields: dict[str, Any]) -> str:
    """What a checkpoint must match to be resumed: the same strategy, settings, model and
    data. A job whose settings changed (it cannot, today) would start afresh."""
    return json.dumps(spec_fields, sort_keys=True, default=str)


def snapshot(tensors: list[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Copies of named tensors on the CPU: what a checkpoint (or the best epoch) keeps."""
    return {name: t.detach().to("cpu", copy=True) for name, t in tensors}


def rng_state(source: Any) -> dict[str, Any]:
    """The row source's own generator (image augmentation). Batches are drawn from (seed,
    epoch) alone; dropout's generator is torch's, saved beside this."""
    rng = getattr(source, "rng", None)
    return {"rows": rng.bit_generator.state if rng is not None else None}


def restore_rng(state: dict[str, Any], torch_rng: torch.Tensor, source: Any) -> None:
    torch.set_rng_state(torch_rng)
    rng = getattr(source, "rng", None)
    if rng is not None and state["rows"] is not None:
        rng.bit_generator.state = state["rows"]
