"""Which queued job a free worker takes next: the database's fair-share choice across users.

A training message only wakes a worker; the job it runs is the one this module picks on the
worker's queue, so one user's twenty queued jobs do not put another user's one job twenty-
first in line. The order:

1. the owner with the fewest jobs running now (a user with nothing running goes first);
2. then the owner whose most recent job started longest ago (never started: first);
3. then the oldest job.

With one worker this is round-robin across users; with several it also spreads them. Only
jobs whose devices fit in the worker's free device slots are candidates (device_slots.py):
a smaller job behind a waiting bigger one runs first, rather than leave slots idle.

Every job still sends exactly one message, so there are as many messages as queued jobs and
each job is claimed eventually. A message whose own job was cancelled or already taken by an
earlier message claims another one, and a worker that finds nothing queued returns.

The claim itself is the same guarded UPDATE as a claim by id (`status = 'queued'`). On
PostgreSQL the candidate row is read `FOR UPDATE SKIP LOCKED`, so workers claiming at once
lock different rows; SQLite serialises writers (and ignores the locking clause), so a worker
that loses a race finds its UPDATE matched nothing and picks again.
"""

from __future__ import annotations

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.jobs.models import Job, JobStatus
from worker import job_records
from worker.device_slots import Slots


def next_in_line(queue: str, free: int | None = None) -> Select[int, int]:
    """(id, devices) of the queued job on `queue` that should run next (see the module
    docstring); with `free` device slots, of those that fit: asking for at most that many,
    or resumed (attempts > 0), which take what is free."""
    running, started = aliased(Job), aliased(Job)
    running_now = (
        select(func.count())
        .where(running.owner_id.is_not_distinct_from(Job.owner_id))
        .where(running.status == JobStatus.running)
        .scalar_subquery()
    )
    last_start = (
        select(func.max(started.started_at))
        .where(started.owner_id.is_not_distinct_from(Job.owner_id))
        .scalar_subquery()
    )
    # (claim_next asks only with at least one slot free)
    fits = or_(Job.devices <= free, Job.attempts > 0) if free is not None else None
    return (
        select(Job.id, Job.devices)
        .where(Job.status == JobStatus.queued, Job.queue == queue)
        .where(*([fits] if fits is not None else []))
        .where(Job.cancel_requested.is_(False))
        .order_by(running_now, last_start.asc().nulls_first(), Job.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=Job)
    )


def claim_next(session: Session, *, queue: str, slots: Slots | None = None) -> Job | None:
    """Claim the next job on `queue` in fair-share order that fits in `slots`' free device
    slots (taking them); None when no queued job there fits.

    Each pass either claims a job or finds that another worker claimed the candidate first
    (and so made progress), so the loop ends."""
    while True:
        free = slots.free(session) if slots is not None else None
        if free is not None and not free:
            session.rollback()
            return None
        row = session.execute(next_in_line(queue, len(free) if free is not None else None))
        candidate = row.first()
        if candidate is None:
            session.rollback()  # end the read (and, on PostgreSQL, its transaction)
            return None
        job_id, devices = int(candidate[0]), int(candidate[1])
        taken = free[: max(1, devices)] if free is not None else None
        job = job_records.claim(  # commits, which releases the row lock
            session, job_id, worker_id=slots.worker_id if slots else None, device_ids=taken
        )
        if job is not None:
            return job


def queue_of(session: Session, job_id: int) -> str | None:
    """The queue a job's message went to (for messages that do not name one)."""
    return session.scalar(select(Job.queue).where(Job.id == job_id))


def waiting(session: Session, queue: str, job_id: int) -> int | None:
    """A job still queued on `queue` when none could be claimed: the message's own job, or
    another (whose message this one may have spent by claiming in its stead); None when
    nothing waits. Its message must not be dropped."""
    own = session.scalar(select(Job.status).where(Job.id == job_id))
    other = session.scalar(
        select(Job.id).where(Job.status == JobStatus.queued, Job.queue == queue).limit(1)
    )
    session.rollback()
    return job_id if own == JobStatus.queued else other
