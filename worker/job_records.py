"""What a running job writes to its row, and nothing else: the claim that starts it, the
strategy Auto chose, progress, metric points, log lines, the cancel check and the outcome.
worker/db_reporter.py calls these for the training loop, retrying while the database is
away; worker/tasks.py claims and finishes.

Every state change is one committed UPDATE guarded by the state it expects, so a web request
and a worker racing on the same job cannot both win.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.jobs.models import Job, JobLog, JobStatus, MetricPoint
from app.jobs.service import now
from app.jobs.strategies import Strategy


def claim(
    session: Session,
    job_id: int,
    *,
    worker_id: str | None = None,
    device_ids: list[int] | None = None,
) -> Job | None:
    """Atomically move a queued job to running, held by `worker_id` on its `device_ids`
    slots; None if someone else has it or it is gone."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued, Job.cancel_requested.is_(False))
        .values(
            status=JobStatus.running,
            phase="starting",
            started_at=now(),
            heartbeat_at=now(),
            attempts=Job.attempts + 1,
            worker_id=worker_id,
            device_ids=device_ids,
        )
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Job, job_id, populate_existing=True)


def record_strategy(session: Session, job_id: int, *, strategy: Strategy, reason: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(resolved_strategy=strategy, strategy_reason=reason)
    )
    session.commit()


def cancel_requested(session: Session, job_id: int) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def record_progress(
    session: Session, job_id: int, *, step: int, total_steps: int, phase: str, eta: float | None
) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            step=step, total_steps=total_steps, phase=phase, eta_seconds=eta, heartbeat_at=now()
        )
    )
    session.commit()


def add_metrics(
    session: Session, job_id: int, *, step: int, epoch: float, values: dict[str, float]
) -> None:
    session.add_all(
        MetricPoint(job_id=job_id, step=step, epoch=epoch, name=k, value=float(v))
        for k, v in values.items()
    )
    session.commit()


def add_log(session: Session, job_id: int, message: str) -> None:
    session.add(JobLog(job_id=job_id, message=message))
    session.commit()


def finish(
    session: Session,
    job_id: int,
    *,
    status: JobStatus,
    error: str | None = None,
    results: dict[str, Any] | None = None,
    export_ready: bool = False,
) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running)
        .values(
            status=status,
            phase=status.value,
            error=error,
            results=results,
            export_ready=export_ready,
            finished_at=now(),
            eta_seconds=None,
        )
    )
    session.commit()


def drop_metrics_after(session: Session, job_id: int, *, step: int) -> int:
    """A job resumed from a checkpoint at `step` reports the later steps again."""
    result = session.execute(
        delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def requeue(session: Session, job_id: int, *, reason: str, max_attempts: int) -> bool:
    """A running job whose process group lost a rank goes back to the queue to resume from
    its checkpoint (or fails once it has used up its attempts, with `reason`). True when it
    was queued again; the caller then sends its message."""
    job = session.get(Job, job_id)
    if job is None:
        return False
    again = job.attempts < max_attempts
    values: dict[str, Any] = (
        {"status": JobStatus.queued, "phase": "queued again (a device process was lost)"}
        if again
        else {
            "status": JobStatus.failed,
            "phase": "failed",
            "finished_at": now(),
            "error": f"{reason} during each of {job.attempts} attempts",
        }
    )
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running)
        .values(**values, worker_id=None, device_ids=None)
    )
    session.commit()
    return again and result.rowcount == 1  # type: ignore[attr-defined]
