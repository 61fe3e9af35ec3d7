"""A training worker's devices, as slots that jobs hold while they run.

A worker has N device slots: TUNEBOARD_WORKER_DEVICES when set (fewer GPUs than the
machine has, or N CPU "devices" to try data-parallel jobs with gloo), else its --concurrency
when given, else its GPUs (nvidia-smi) on the gpu queue and one on cpu. It runs one Celery
child per slot (worker/main.py), and each child claims the next job whose devices fit in
the slots free now:

- which slots are free is read from the database: those of this worker not held by one of
  its running jobs (`Job.worker_id`, `Job.device_ids`), so a job whose child was killed
  keeps its slots until housekeeping re-queues it, and nothing is ever oversubscribed;
- the children of one worker claim one at a time (`claiming`: an flock per worker), so two
  of them cannot both take slot 0;
- a single-device job on a GPU sees only its own GPU (`pin`: CUDA_VISIBLE_DEVICES, set
  before CUDA starts in that child); a job across several runs one process per slot.

A job asking for more slots than are free waits in the queue: its message comes back after
TUNEBOARD_DEVICE_WAIT_SECONDS (worker/tasks.py). A job resumed after losing a rank
(attempts > 0) takes as many slots as are free, up to what it asked for: its checkpoint
does not depend on the count (worker/training/distributed.py).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.jobs.models import Job, JobStatus

GPU_QUEUE = "gpu"


def worker_id(pid: int | None = None) -> str:
    """A worker's id, "hostname:pid" of its main process (the heartbeat's row)."""
    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


def gpu_names() -> list[str]:
    """The GPUs nvidia-smi lists (none without it). Not torch: initialising CUDA in a
    worker's main process would break it in every child it forks."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


@functools.cache
def gpu_count() -> int:
    return len(gpu_names())


SLOTS_VARIABLE = "TUNEBOARD_WORKER_SLOTS"  # the parent's count, inherited by its children


def slot_count(queues: list[str], concurrency: int | None = None) -> int:
    """How many device slots a worker consuming `queues` announces."""
    override = get_settings().worker_devices
    if override > 0:
        return override
    if concurrency:
        return concurrency
    if GPU_QUEUE in queues:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            return len([d for d in visible.split(",") if d.strip()])
        return max(1, gpu_count())
    return 1


def announce(queues: list[str], concurrency: int | None) -> int:
    """The worker's slot count, resolved once in its main process and left in the
    environment for the children it forks."""
    count = slot_count(queues, concurrency)
    os.environ[SLOTS_VARIABLE] = str(count)
    return count


@dataclass(frozen=True)
class Slots:
    """The slots of the worker this process belongs to (a Celery child: its parent's)."""

    worker_id: str
    count: int

    @classmethod
    def of_parent(cls, queue: str) -> Slots:
        count = os.environ.get(SLOTS_VARIABLE)
        return cls(worker_id(os.getppid()), int(count) if count else slot_count([queue]))

    def free(self, session: Session) -> list[int]:
        held: set[int] = set()
        for ids in session.scalars(
            select(Job.device_ids).where(
                Job.worker_id == self.worker_id, Job.status == JobStatus.running
            )
        ):
            held.update(ids or [])
        return [slot for slot in range(self.count) if slot not in held]


@contextmanager
def claiming(slots: Slots) -> Iterator[None]:
    """One claim at a time among the children of one worker (they share its slots)."""
    name = "tuneboard-slots-" + slots.worker_id.replace(":", "-").replace("/", "-") + ".lock"
    path = Path(tempfile.gettempdir()) / name
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def visible_devices(slots: list[int]) -> str:
    """CUDA_VISIBLE_DEVICES for these slots: GPU indexes, or the entries of the worker's own
    CUDA_VISIBLE_DEVICES where it was started with one."""
    own = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [d.strip() for d in own.split(",") if d.strip()] if own else None
    return ",".join(names[s] if names and s < len(names) else str(s) for s in slots)


def pin(slots: list[int] | None) -> None:
    """A single-device job on a GPU worker sees only its own GPU, as cuda:0. Called in the
    job's child before anything touches CUDA."""
    if slots and gpu_count() > 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_devices(slots)
