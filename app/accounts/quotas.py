"""Per-user limits: stored upload bytes and jobs queued or running at once. Going over one is
a 429 that says which limit and what to do; nothing already stored or running is touched."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.config import Settings
from app.datasets.models import Dataset
from app.jobs.models import Job, JobStatus


class QuotaExceeded(Exception):
    """A per-user limit would be passed; the message names it (429)."""


def check_storage(session: Session, settings: Settings, user: User, incoming: int) -> None:
    used = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.owner_id == user.id)
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
