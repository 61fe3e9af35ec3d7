"""Jobs as the web sees them: admit, create and enqueue, list, cancel, and read back their
curves and logs. What a running job writes is worker/job_records.py; what the workers'
heartbeat tidies (lost workers, lost messages, stranded auto jobs) is worker/housekeeping.py.

Every state change is one committed UPDATE guarded by the state it expects, so a web request
and a worker racing on the same job cannot both win.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import catalog
from app.accounts.models import User
from app.accounts.ownership import owned, visible
from app.accounts.quotas import check_active_jobs
from app.catalog import UnknownModel
from app.config import Settings
from app.datasets.models import Dataset, DatasetStatus
from app.jobs.models import Device, Job, JobCreate, JobLog, JobStatus, MetricPoint
from app.jobs.params import JobParams, resolve_params
from app.jobs.strategies import Strategy
from app.queue import enqueue_training
from app.workers.service import most_devices, queue_for
from worker.training.spec import ENCODER_MAX_LENGTH
from worker.training.tasks import get_task


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
    device: Device = Device.auto,
) -> catalog.ModelEntry:
    """May `owner` queue these jobs? The time limit is allowed, the dataset exists (for this
    user), the model reads what it holds and can run these strategies, a live worker on the
    job's queue has the devices asked for, and the user's quota of active jobs has room;
    raises InvalidJob, DatasetNotFound, UnknownModel (with the choices) or QuotaExceeded
    otherwise."""
    check_time_limit(settings, params.time_limit_minutes, admin=owner.is_admin)
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or not visible(owner, dataset):
        raise DatasetNotFound(f"no dataset with id {dataset_id}; upload one first")
    if dataset.status == DatasetStatus.checking:
        raise InvalidJob(f"dataset {dataset_id} is still being checked; try again when it is ready")
    if dataset.status == DatasetStatus.invalid:
        reason = (dataset.error or {}).get("detail", "")
        raise InvalidJob(f"dataset {dataset_id} is invalid: {reason}; upload a fixed file")
    task = get_task(dataset.task)
    for strategy in strategies:
        if strategy.value in task.not_offered:
            reason = task.not_offered[strategy.value]
            raise InvalidJob(f"{strategy.value} does not apply to {task.name}: {reason}")
    max_length = getattr(params, "max_length", None) or 0  # a field made from the table
    if task.name != "generation" and max_length > ENCODER_MAX_LENGTH:
        raise InvalidJob(
            f"max_length is {max_length} but encoders read at most {ENCODER_MAX_LENGTH} "
            "tokens; longer maximum lengths are for generation"
        )
    check_devices(session, getattr(params, "devices", 1) or 1, strategies, device)
    entry = catalog.resolve(
        model, settings, modality=catalog.model_kind(dataset.modality, dataset.task)
    )
    if entry.lora_unavailable and Strategy.finetune_lora in strategies:
        raise UnknownModel(f"finetune_lora cannot adapt {model}: {entry.lora_unavailable}")
    check_active_jobs(session, settings, owner, len(strategies))
    return entry


def check_devices(
    session: Session, devices: int, strategies: list[Strategy], device: Device
) -> None:
    """Several devices need steps to split (frozen features fit their head by L-BFGS on
    cached features, in seconds) and a live worker with that many slots on the job's
    queue: a job asking for more than any has would wait for ever."""
    if devices <= 1:
        return
    if all(s is Strategy.transfer_frozen for s in strategies):
        raise InvalidJob(
            f"devices is {devices} but transfer_frozen fits its head by L-BFGS on cached "
            "features in seconds, with no training steps to spread across devices; "
            "leave devices at 1, or choose a strategy that trains steps"
        )
    queue = queue_for(session, device)
    most = most_devices(session, queue)
    if most < devices:
        has = (
            f"the most any live worker on the {queue} queue has is {most}"
            if most
            else f"no worker on the {queue} queue is alive"
        )
        ask = f"ask for {most} or fewer, or " if most > 1 else "leave devices at 1, or "
        raise InvalidJob(
            f"devices is {devices} but {has} (a worker's device slots are its GPUs; "
            f"TUNEBOARD_WORKER_DEVICES overrides the count); {ask}start a worker with "
            f"{'more GPUs' if queue == 'gpu' else 'more devices'}"
        )


def devices_for(strategy: Strategy, params: dict[str, Any]) -> int:
    """How many device slots a job holds: its `devices`, but one for frozen features, which
    have no steps to split (a comparison's frozen job among stepping ones)."""
    if strategy is Strategy.transfer_frozen:
        return 1
    return int(params.get("devices") or 1)


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
        device=payload.device,
    )
    dataset = session.get(Dataset, payload.dataset_id)
    assert dataset is not None  # admit found it
    params = resolve_params(payload.params.model_dump(), payload.strategy, dataset.task)
    job = Job(
        owner_id=owner.id,
        dataset_id=payload.dataset_id,
        model=payload.model,
        strategy=payload.strategy,
        device=payload.device,
        queue=queue_for(session, payload.device),
        params=params,
        devices=devices_for(payload.strategy, params),
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
    worker to claim the next job in fair-share order (worker/fair_share.py)."""
    enqueue_training(job.id, queue=job.queue)


def list_jobs(session: Session, user: User, *, limit: int = 50) -> list[Job]:
    return list(session.scalars(owned(select(Job).order_by(Job.id.desc()).limit(limit), Job, user)))


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


def recorded_metrics(session: Session, job_ids: list[int]) -> set[str]:
    """The names of the series these jobs have written points of so far."""
    rows = session.scalars(
        select(MetricPoint.name).where(MetricPoint.job_id.in_(job_ids)).distinct()
    )
    return set(rows)


def log_tail(session: Session, job_id: int, *, limit: int = 30) -> list[JobLog]:
    rows = session.scalars(
        select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(limit)
    )
    return list(reversed(list(rows)))
