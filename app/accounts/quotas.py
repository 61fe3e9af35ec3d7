"""Per-user limits: stored upload bytes, jobs queued or running at once, and playground
predictions waiting at once and asked per minute. Going over one is a 429 that says which
limit and what to do; nothing already stored, running or queued is touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.config import Settings
from app.datasets.models import Dataset, DatasetStatus
from app.jobs.models import Job, JobStatus
from app.predictions.models import Prediction, PredictionStatus


class QuotaExceeded(Exception):
    """A per-user limit would be passed; the message names it (429)."""


def check_storage(session: Session, settings: Settings, user: User, incoming: int) -> None:
    used = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(
            Dataset.owner_id == user.id,
            Dataset.status != DatasetStatus.invalid,  # refused uploads keep no files
        )
    )
    limit = settings.max_storage_bytes_per_user
    if int(used or 0) + incoming > limit:
        raise QuotaExceeded(
            f"this upload would take your datasets past your storage quota of "
            f"{limit / 1024**3:.1f} GiB ({int(used or 0) / 1024**3:.2f} GiB used); "
            "delete datasets you no longer need or ask an admin for more"
        )


def check_active_jobs(session: Session, settings: Settings, user: User, adding: int) -> None:
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == user.id, Job.status.in_([JobStatus.queued, JobStatus.running]))
    )
    limit = settings.max_active_jobs_per_user
    if int(active or 0) + adding > limit:
        raise QuotaExceeded(
            f"you have {active} jobs queued or running and may have at most {limit} at once; "
            "wait for some to finish or cancel one"
        )


def check_predictions(session: Session, settings: Settings, owner_id: int | None) -> None:
    """One more playground question or batch file for `owner_id` (the model's owner, whose
    predictions they are): within the number waiting at once and the number per minute."""
    mine = select(func.count()).select_from(Prediction).where(Prediction.owner_id == owner_id)
    waiting = int(session.scalar(mine.where(Prediction.status == PredictionStatus.queued)) or 0)
    limit = settings.max_queued_predictions_per_user
    if waiting >= limit:
        raise QuotaExceeded(
            f"you have {waiting} predictions waiting to be answered and may have at most "
            f"{limit} at once; wait for them to finish, or put many texts or images in one "
            "batch file"
        )
    since = datetime.now(UTC) - timedelta(minutes=1)
    recent = int(session.scalar(mine.where(Prediction.created_at >= since)) or 0)
    per_minute = settings.max_predictions_per_minute_per_user
    if recent >= per_minute:
        raise QuotaExceeded(
            f"you have asked for {recent} predictions in the last minute and may ask for at "
            f"most {per_minute} a minute; try again in a minute, or put many texts or images "
            "in one batch file"
        )
