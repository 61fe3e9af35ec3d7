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

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("tuneboard.worker")

NAME = "checkpoint.pt"
FORMAT = 1


def path_in(output_dir: Path) -> Path:
    return output_dir / NAME


def save(path: Path, state: dict[str, Any]) -> None:
    """Atomically replace `path` with `state` (tensors, dicts, lists and plain values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power cut must not bring back the old name)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
