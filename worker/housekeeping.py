"""What the workers' heartbeat tidies, whoever runs it (worker/heartbeat.py): jobs left
running by a worker that died, messages the broker lost, and auto jobs waiting for a GPU
worker that is gone. Each is a guarded UPDATE, so two workers tidying at once cannot both
act on one job.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.jobs.models import Device, Job, JobStatus
from app.jobs.service import now, send, time_limit_seconds
from app.queue import hard_time_limit


def reap_stale(session: Session, *, stale_after: timedelta, max_attempts: int) -> list[int]:
    """Jobs left `running` by a worker that died (no heartbeat for `stale_after`) go back to
    the queue, or fail once they have used up their attempts. Returns the re-queued ids."""
    cutoff = now() - stale_after
    stale = list(
        session.scalars(
            select(Job).where(Job.status == JobStatus.running, Job.heartbeat_at < cutoff)
        )
    )
    requeued: list[Job] = []
    settings = get_settings()
    for job in stale:
        guard = (Job.id == job.id, Job.status == JobStatus.running, Job.heartbeat_at < cutoff)
        ran = (now() - _aware(job.started_at)).total_seconds() if job.started_at else 0.0
        if ran > hard_time_limit(settings, time_limit_seconds(job, settings)):
            # Celery killed it at the hard limit (a step that never came back to check).
            values: dict[str, Any] = {
                "status": JobStatus.failed,
                "phase": "failed",
                "finished_at": now(),
                "error": f"time limit: the job ran past {time_limit_seconds(job, settings):.0f} s "
                "and did not stop at a step, so its process was killed",
            }
        elif job.attempts >= max_attempts:
            values = {
                "status": JobStatus.failed,
                "phase": "failed",
                "finished_at": now(),
                "error": f"the worker stopped responding during each of {job.attempts} "
                "attempts; check the worker's log for out-of-memory kills",
            }
        else:
            values = {"status": JobStatus.queued, "phase": "queued again (worker lost)"}
        # No in-session sync: SQLite hands back naive datetimes that cannot be compared with
        # the aware cutoff in Python; the guarded UPDATE itself runs in the database.
        result = session.execute(
            update(Job).where(*guard).values(**values),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount == 1 and values["status"] == JobStatus.queued:  # type: ignore[attr-defined]
            requeued.append(job)
    session.commit()  # committed before the messages go out, as for new jobs
    for job in requeued:
        send(job)
    return [job.id for job in requeued]


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every one Tuneboard stores is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def resend_lost(session: Session, broker_sizes: dict[str, int], *, settle: timedelta) -> list[int]:
    """Queued jobs whose messages the broker lost (Redis restarted without persistence) are
    sent again. A queue holding fewer messages than the database has queued jobs on it has
    lost some; which ones is unknowable, so all of that queue's queued jobs are re-sent — a
    duplicate is harmless, as the claim is atomic. Jobs younger than `settle` are left out:
    their first message may still be on its way."""
    resent = []
    for queue, size in broker_sizes.items():
        queued = list(
            session.scalars(
                select(Job)
                .where(Job.status == JobStatus.queued, Job.queue == queue)
                .where(Job.created_at < now() - settle)
                .order_by(Job.id)
            )
        )
        if len(queued) > size:
            for job in queued:
                send(job)
                resent.append(job.id)
    return resent


def reroute_auto(session: Session, *, gpu_alive: bool, settle: timedelta) -> list[int]:
    """Queued "auto" jobs sent to gpu while no GPU worker is alive any more (it died or
    left) go to cpu instead, rather than wait for a GPU that may never come back."""
    if gpu_alive:
        return []
    stranded = list(
        session.scalars(
            select(Job).where(
                Job.status == JobStatus.queued,
                Job.queue == "gpu",
                Job.device == Device.auto,
                Job.created_at < now() - settle,
            )
        )
    )
    moved = []
    for job in stranded:
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.queued, Job.queue == "gpu")
            .values(queue="cpu"),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            moved.append(job)
    session.commit()
    for job in moved:
        session.refresh(job)
        send(job)
    return [job.id for job in moved]
