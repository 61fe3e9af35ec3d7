"""Job lifecycle: create and enqueue, claim, progress, finish, cancel.

Every state change is one committed UPDATE guarded by the state it expects, so a web request
and a worker racing on the same job cannot both win.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app import catalog
from app.accounts.models import User
from app.accounts.quotas import check_active_jobs
from app.catalog import UnknownModel
from app.config import Settings, get_settings
from app.datasets.models import Dataset, DatasetStatus
from app.jobs.models import Device, Job, JobCreate, JobLog, JobStatus, MetricPoint
from app.jobs.params import JobParams, resolve_params
from app.jobs.strategies import Strategy
from app.queue import enqueue_training, hard_time_limit
from app.workers.service import queue_for


class JobConflict(ValueError):
    """The job is not in a state that allows the request (e.g. cancelling a finished job)."""


class DatasetNotFound(LookupError):
    pass


class InvalidJob(ValueError):
    """Settings this server does not allow; the message says which and the limit."""


def now() -> datetime:
    return datetime.now(UTC)


def admit(
    session: Session,
    settings: Settings,
    *,
    dataset_id: int,
    model: str,
    strategies: list[Strategy],
    params: JobParams,
    owner: User,
) -> catalog.ModelEntry:
    """May `owner` queue these jobs? The time limit is allowed, the dataset exists (for this
    user), the model reads what it holds and can run these strategies, and the user's quota
    of active jobs has room; raises InvalidJob, DatasetNotFound, UnknownModel (with the
    choices) or QuotaExceeded otherwise."""
    check_time_limit(settings, params.time_limit_minutes, admin=owner.is_admin)
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or not (owner.is_admin or dataset.owner_id == owner.id):
        raise DatasetNotFound(f"no dataset with id {dataset_id}; upload one first")
    if dataset.status == DatasetStatus.checking:
        raise InvalidJob(f"dataset {dataset_id} is still being checked; try again when it is ready")
    if dataset.status == DatasetStatus.invalid:
        reason = (dataset.error or {}).get("detail", "")
        raise InvalidJob(f"dataset {dataset_id} is invalid: {reason}; upload a fixed file")
    entry = catalog.resolve(model, settings, modality=dataset.modality)
    if entry.lora_unavailable and Strategy.finetune_lora in strategies:
        raise UnknownModel(f"finetune_lora cannot adapt {model}: {entry.lora_unavailable}")
    check_active_jobs(session, settings, owner, len(strategies))
    return entry


def check_time_limit(settings: Settings, minutes: int | None, *, admin: bool = False) -> None:
    """Admins may ask for up to the server's maximum; everyone else up to a lower cap, so
    one user cannot hold a worker for a week."""
    limit = settings.max_job_time_limit_seconds
    where = "(TUNEBOARD_MAX_JOB_TIME_LIMIT_SECONDS)"
    if not admin and settings.max_user_job_time_limit_seconds < limit:
        limit = settings.max_user_job_time_limit_seconds
        where = "for non-admin users (TUNEBOARD_MAX_USER_JOB_TIME_LIMIT_SECONDS); ask an admin"
    if minutes is not None and minutes * 60 > limit:
        raise InvalidJob(
            f"time_limit_minutes is {minutes} but this server allows at most "
            f"{limit / 60:.0f} {where}"
        )


def create_job(session: Session, *, payload: JobCreate, settings: Settings, owner: User) -> Job:
    admit(
        session,
        settings,
        dataset_id=payload.dataset_id,
        model=payload.model,
        strategies=[payload.strategy],
        params=payload.params,
        owner=owner,
    )
    job = Job(
        owner_id=owner.id,
        dataset_id=payload.dataset_id,
        model=payload.model,
        strategy=payload.strategy,
        device=payload.device,
        queue=queue_for(session, payload.device),
        params=resolve_params(payload.params.model_dump(), payload.strategy),
        status=JobStatus.queued,
    )
    session.add(job)
    session.commit()  # the worker must see the row before the message arrives
    send(job)
    return job


def time_limit_seconds(job: Job, settings: Settings) -> float:
    minutes = job.params.get("time_limit_minutes")
    return float(minutes) * 60 if minutes else settings.job_time_limit_seconds


def send(job: Job) -> None:
    """The one way a job's id goes to the broker: one message on its queue, which wakes a
    worker to claim the next job in fair-share order (app/jobs/fair_share.py)."""
    enqueue_training(job.id, queue=job.queue)


def list_jobs(session: Session, user: User, *, limit: int = 50) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if not user.is_admin:
        query = query.where(Job.owner_id == user.id)
    return list(session.scalars(query))


def claim(session: Session, job_id: int) -> Job | None:
    """Atomically move a queued job to running; None if someone else has it or it is gone."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued, Job.cancel_requested.is_(False))
        .values(
            status=JobStatus.running,
            phase="starting",
            started_at=now(),
            heartbeat_at=now(),
            attempts=Job.attempts + 1,
        )
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Job, job_id, populate_existing=True)


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


def drop_metrics_after(session: Session, job_id: int, *, step: int) -> int:
    """A job resumed from a checkpoint at `step` reports the later steps again."""
    result = session.execute(
        delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


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


def request_cancel(session: Session, job: Job) -> Job:
    if job.status.finished:
        raise JobConflict(f"job {job.id} has already {job.status.value}; nothing to cancel")
    # A queued job is cancelled at once; a running one stops at its next step.
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, phase="cancelled", finished_at=now())
    )
    session.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    return job


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


def metric_series(session: Session, job_id: int) -> dict[str, dict[str, list[float]]]:
    series: dict[str, dict[str, list[float]]] = defaultdict(
        lambda: {"step": [], "epoch": [], "value": []}
    )
    rows = session.execute(
        select(MetricPoint.name, MetricPoint.step, MetricPoint.epoch, MetricPoint.value)
        .where(MetricPoint.job_id == job_id)
        .order_by(MetricPoint.id)
    )
    for name, step, epoch, value in rows:
        s = series[name]
        s["step"].append(step)
        s["epoch"].append(epoch)
        s["value"].append(value)
    return dict(series)


def log_tail(session: Session, job_id: int, *, limit: int = 30) -> list[JobLog]:
    rows = session.scalars(
        select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(limit)
    )
    return list(reversed(list(rows)))
