"""Worker heartbeats, who is alive, and which queue a job goes to.

A worker beats every TUNEBOARD_WORKER_BEAT_SECONDS (worker/heartbeat.py); one not heard
from for three beats is taken for gone. Rows of workers gone for a day are removed, so the
table stays small.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.ownership import visible
from app.config import get_settings
from app.jobs.models import Device, Job, JobStatus
from app.workers.models import Fleet, Worker, WorkerOut

MISSED_BEATS = 3  # two missed beats and a margin
FORGET_AFTER = timedelta(days=1)
CPU_QUEUE, GPU_QUEUE = "cpu", "gpu"


def now() -> datetime:
    return datetime.now(UTC)


def beat(
    session: Session,
    *,
    worker_id: str,
    hostname: str,
    pid: int,
    queues: list[str],
    device: str,
    device_count: int = 1,
) -> None:
    worker = session.get(Worker, worker_id)
    if worker is None:
        worker = Worker(id=worker_id, hostname=hostname, pid=pid)
        session.add(worker)
    worker.queues, worker.device, worker.device_count = queues, device, device_count
    worker.last_seen = now()
    session.execute(delete(Worker).where(Worker.last_seen < now() - FORGET_AFTER))
    session.commit()


def leave(session: Session, worker_id: str) -> None:
    """A worker shutting down cleanly says so, rather than waiting to be timed out."""
    session.execute(delete(Worker).where(Worker.id == worker_id))
    session.commit()


def alive(session: Session) -> list[Worker]:
    cutoff = now() - timedelta(seconds=MISSED_BEATS * get_settings().worker_beat_seconds)
    return list(
        session.scalars(select(Worker).where(Worker.last_seen >= cutoff).order_by(Worker.id))
    )


def queue_for(session: Session, device: Device) -> str:
    """gpu and cpu jobs go to their queue (a gpu job waits for a GPU worker); auto goes to
    gpu when a live worker consumes it, else to cpu."""
    if device == Device.gpu:
        return GPU_QUEUE
    if device == Device.cpu:
        return CPU_QUEUE
    gpu_alive = any(GPU_QUEUE in w.queues for w in alive(session))
    return GPU_QUEUE if gpu_alive else CPU_QUEUE


def most_devices(session: Session, queue: str) -> int:
    """The most device slots any live worker on `queue` has (0: none is alive): a job that
    asks for more could never start."""
    return max((w.device_count for w in alive(session) if queue in w.queues), default=0)


def queue_depth(session: Session) -> dict[str, int]:
    """Queued jobs per queue, from the database (the source of truth, not the broker)."""
    rows = session.execute(
        select(Job.queue, func.count()).where(Job.status == JobStatus.queued).group_by(Job.queue)
    )
    depth = {CPU_QUEUE: 0, GPU_QUEUE: 0}
    depth.update({queue: int(n) for queue, n in rows})
    return depth


def busy_devices(session: Session, viewer: User) -> dict[str, dict[int, int | None]]:
    """{worker id: {device slot: the running job holding it}}; a job the viewer may not see
    is None there, so another user's job ids are not revealed (only that a slot is busy)."""
    # device_ids is filtered here, not in SQL: a JSON column set to None may hold JSON null.
    rows = session.scalars(
        select(Job).where(Job.status == JobStatus.running, Job.worker_id.is_not(None))
    )
    busy: dict[str, dict[int, int | None]] = {}
    for job in rows:
        if job.worker_id is None or not job.device_ids:
            continue
        slots = busy.setdefault(job.worker_id, {})
        for slot in job.device_ids:
            slots[int(slot)] = job.id if visible(viewer, job) else None
    return busy


def fleet(session: Session, *, viewer: User) -> Fleet:
    """Live workers, their busy device slots and queue depths; where they run (host,
    process) only for admins."""
    busy = busy_devices(session, viewer)
    workers = [
        WorkerOut.model_validate(w).model_copy(update={"busy_devices": busy.get(w.id, {})})
        for w in alive(session)
    ]
    if not viewer.is_admin:
        workers = [
            w.model_copy(update={"id": f"worker {n}", "hostname": None, "pid": None})
            for n, w in enumerate(workers, start=1)
        ]
    return Fleet(workers=workers, queue_depth=queue_depth(session))
