"""Data-parallel training: one process per device, each a rank of a torch.distributed group.

A job asking for several devices runs as that many copies of `run_training`, started by
torch.distributed's elastic launcher (`torchrun`; worker/ddp_job.py starts it). Each copy is
given a `Group`, and this module holds everything the copies do differently from a lone run:

- every global batch is the same list of rows on every rank (the batch order comes from the
  seed and the epoch alone); each rank takes every world-th row of it (`shard`), so an epoch
  sees each example once, and weights its loss so that DistributedDataParallel's gradient
  average is the mean over the whole batch. The run's maths therefore do not depend on how
  many devices share it: the same steps, learning rate and checkpoint, and a checkpoint
  written by a group resumes in a single process and the other way round;
- validation rows are sharded the same way and the outputs gathered (`gather`), so every
  rank scores the same logits and picks the same best epoch;
- a stop (cancel, time limit) is agreed by all ranks at each step (`any`), so no rank is left
  waiting in a collective for one that has left;
- rank 0 alone reports, writes checkpoints and exports (`main`); `QuietReporter` is what the
  other ranks report to: nothing, except that they still read cancel and the time limit.

`SINGLE` is the group of a lone run: every method is then a no-op, so the loop has one path.
Pure: torch only, no database (the rank's entry point, worker/ddp_job.py, builds reporters).
"""

from __future__ import annotations

import ctypes
import inspect
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from worker.training.reporting import Reporter


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that reports, checkpoints and exports."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def shard(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's rows of a global batch, and the weight of its mean loss: rows here /
        rows in the batch × world, since DDP averages gradients over the ranks (the weighted
        sum is then the batch mean). A rank left without a row (a last batch smaller than
        the group) runs the batch's first row at weight 0: every rank must take every step."""
        if not self.parallel:
            return rows, 1.0
        mine = rows[self.rank :: self.world]
        if len(mine) == 0:
            return rows[:1], 0.0
        return mine, len(mine) * self.world / len(rows)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a stop must be agreed)."""
        if not self.parallel:
            return flag
        agreed = torch.tensor([int(flag)], device=_collective_device())
        dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
        return bool(agreed.item())

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of `value` over the ranks (each rank's weighted share of a loss)."""
        if not self.parallel:
            return value
        summed = value.detach().clone().to(_collective_device())
        dist.all_reduce(summed)
        return summed

    def share(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a picklable object)."""
        if not self.parallel:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, rows: list[int], predict: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """`predict` over `rows`, each rank doing every world-th row; every rank gets all the
        outputs, in the order of `rows`. Per-token outputs (entity tagging) may come back
        narrower from one rank than another; they are padded with zeros, which no score
        reads (as predict_logits does for its own batches)."""
        if not self.parallel:
            return predict(rows)
        mine = rows[self.rank :: self.world]
        parts: list[np.ndarray | None] = [None] * self.world
        dist.all_gather_object(parts, predict(mine) if len(mine) else None)
        shaped = [p for p in parts if p is not None]
        first = shaped[0]
        width = max(p.shape[1] for p in shaped) if first.ndim >= 2 else None
        whole = np.zeros((len(rows), *([width] if width else []), *first.shape[2:]), first.dtype)
        for rank, part in enumerate(parts):
            if part is not None:
                whole[rank :: self.world, : part.shape[1]] = part
        return whole

    def wrap(self, model: nn.Module, forward: Callable[..., torch.Tensor]) -> Stepper:
        """What the training steps call instead of `forward`: the same function, run through
        DistributedDataParallel over `model` (whose trained parameters then average their
        gradients across the ranks in the backward pass), or `forward` itself alone."""
        return Stepper(model, forward, self)


class _Forward(nn.Module):
    """An nn.Module around a strategy's forward function, so DDP can wrap any strategy's
    step (a PEFT model, a model's top blocks, a sentence-transformers pipeline) as it is."""

    def __init__(self, model: nn.Module, forward: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.run = forward

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.run(batch)


# torch 2.13 renamed the switch (and warns on the old name); older releases know only it.
_NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


class Stepper:
    """`stepper(batch)` for a training forward; `stepper.accumulating()` around a batch whose
    gradients wait for a later one (no all-reduce until the group's last batch)."""

    def __init__(self, model: nn.Module, forward: Callable[..., torch.Tensor], group: Group):
        self.forward = forward
        self.ddp: DistributedDataParallel | None = None
        if group.parallel:
            device = next(model.parameters()).device
            self.ddp = DistributedDataParallel(
                _Forward(model, forward),
                device_ids=[device.index] if device.type == "cuda" else None,
                # Buffers do not train (batch norms keep their statistics, loop.py), and a
                # broadcast at every forward would be a collective evaluation must not need.
                **_NO_BUFFER_SYNC,
                # A head or block some batches leave unused must not stall the reduction.
                find_unused_parameters=True,
            )

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.ddp(batch) if self.ddp is not None else self.forward(batch)

    @contextmanager
    def accumulating(self, waits: bool) -> Iterator[None]:
        with self.ddp.no_sync() if (self.ddp is not None and waits) else nullcontext():
            yield


class QuietReporter:
    """What ranks other than 0 report to: nothing is written (rank 0 reports the whole
    batch's figures), but cancel and the time limit are still read from `inner`."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def log(self, message: str) -> None:
        pass

    def progress(self, *, step: int, total_steps: int, phase: str) -> None:
        pass

    def metrics(self, *, step: int, epoch: float, values: dict[str, float]) -> None:
        pass

    def should_stop(self) -> bool:
        return self.inner.should_stop()

    def rewind(self, *, step: int) -> None:
        pass


SINGLE = Group()


def join(device: str, backend: str | None = None) -> Group:
    """Join the group torchrun started this process in (its RANK, WORLD_SIZE, LOCAL_RANK and
    rendezvous variables): NCCL on CUDA, each rank on its own GPU (the worker has made only
    the job's GPUs visible), gloo on the CPU. `backend="gloo"` on CUDA lets ranks share GPUs
    (bench/gpu_training_check.py on a one-GPU machine; NCCL refuses two ranks on one GPU).
    The process also dies with its launcher, so a worker killed outright leaves no rank."""
    die_with_parent()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device != "cpu" and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
        torch.cuda.set_device(local)
        if (backend or "nccl") == "nccl":
            dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        else:
            dist.init_process_group(backend)
    else:
        dist.init_process_group("gloo")
    return Group(rank=rank, world=world)


def leave(group: Group) -> None:
    if group.parallel and dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    # NCCL moves CUDA tensors only; gloo, CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent exits (prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
