"""Celery tasks. A task takes a job id, claims the job in the database and runs it; the
training code itself lives in worker/training and knows nothing of Celery or SQL."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.db import get_sessionmaker
from app.jobs import service as jobs
from app.jobs.artifacts import job_dir
from app.jobs.models import Job, JobStatus
from app.queue import TRAIN_TASK, celery_app, enqueue_training, hard_time_limit
from app.workers.service import CPU_QUEUE
from worker import device_slots, fair_share, job_records
from worker.db_reporter import DatabaseReporter
from worker.ddp_job import RanksLost, launch
from worker.job_spec import train
from worker.process_limits import arm_hard_time_limit, disarm_hard_time_limit

log = logging.getLogger("tuneboard.worker")


@celery_app.task(name=TRAIN_TASK, acks_late=True)
def run_job(job_id: int, queue: str | None = None) -> None:
    """`job_id` is the job whose creation sent this message; the job run is the one the
    database picks next on `queue` in fair-share order (worker/fair_share.py)."""
    sessions = get_sessionmaker()
    with sessions() as session:
        queue = queue or fair_share.queue_of(session, job_id) or CPU_QUEUE
        slots = device_slots.Slots.of_parent(queue)
        with device_slots.claiming(slots):
            job = fair_share.claim_next(session, queue=queue, slots=slots)
        if job is None:
            waiting = fair_share.waiting(session, queue, job_id)
            if waiting is not None:
                # Queued jobs, none of which fits in the free device slots: the message comes
                # back later, so a job runs once the devices it asked for are free.
                log.info("job %s waits for free devices on %s", waiting, queue)
                wait = get_settings().device_wait_seconds
                enqueue_training(waiting, queue=queue, countdown=wait)
            else:
                log.info(
                    "job %s is not queued (taken, finished or cancelled) and no other job "
                    "waits on %s; skipping",
                    job_id,
                    queue,
                )
            return
    if job.id != job_id:
        log.info("message for job %s: job %s is next in fair-share order", job_id, job.id)
    job_id = job.id
    settings = get_settings()
    limit = jobs.time_limit_seconds(job, settings)
    # This child runs this one job; it ends itself at the job's own hard limit.
    arm_hard_time_limit(hard_time_limit(settings, limit))
    try:
        _run(job, sessions, limit)
    finally:
        disarm_hard_time_limit()


def _run(job: Job, sessions: sessionmaker[Session], limit: float) -> None:
    job_id = job.id
    reporter = DatabaseReporter(job_id, sessions, time_limit_seconds=limit)
    # torch is imported here, not at module level, so the worker's parent process stays
    # light and fork-safe; only the process that trains loads it.
    from worker.training.reporting import Cancelled

    try:
        if len(job.device_ids or []) > 1:
            result = launch(job, reporter, limit)  # one process per device (ddp_job.py)
        else:
            device_slots.pin(job.device_ids)  # this job's own GPU, as cuda:0
            result = train(job, reporter)
    except RanksLost as exc:
        # A device process died (killed, out of memory): the checkpoint stays, and the job
        # resumes from it like a job whose worker was lost (on as many devices as are free).
        reporter.log(f"a device process was lost: {exc}")
        log.warning("job %s: %s", job_id, exc)
        settings = get_settings()
        with sessions() as session:
            lost = "a device process was lost"
            again = job_records.requeue(
                session, job_id, reason=lost, max_attempts=settings.max_attempts
            )
        if again:
            enqueue_training(job_id, queue=job.queue)
    except Cancelled:
        _discard_checkpoint(job_id)  # a cancelled or timed-out job is never resumed
        if reporter.timed_out:
            reason = f"time limit: stopped after {limit:.0f} s of running (its time limit)"
            reporter.log(reason)
            _finish(reporter, status=JobStatus.failed, error=reason)
        else:
            reporter.log("cancelled by request")
            _finish(reporter, status=JobStatus.cancelled)
    except (OperationalError, InterfaceError):
        # The database stayed away longer than the reporter's retries. Nothing can be
        # recorded now; the checkpoint stays, the job's heartbeat stops, and housekeeping
        # re-queues it once the database is back: it resumes where it was saved.
        log.exception("job %s: database unreachable; left for re-queueing", job_id)
        raise
    except Exception as exc:  # noqa: BLE001 - any failure must reach the job page
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        log.exception("job %s failed", job_id)
        _discard_checkpoint(job_id)
        reporter.log("failed: " + reason + "\n" + traceback.format_exc(limit=5))
        _finish(reporter, status=JobStatus.failed, error=reason)
    else:
        _finish(
            reporter,
            status=JobStatus.succeeded,
            results=result.metrics,
            export_ready=result.export_path.is_file(),
        )


def _finish(reporter: DatabaseReporter, **outcome: Any) -> None:
    """The job's last write, retried like its others: a result must not be lost to a
    database that is restarting just as the job ends."""
    reporter.write(
        "the outcome", lambda session: job_records.finish(session, reporter.job_id, **outcome)
    )


def _discard_checkpoint(job_id: int) -> None:
    from worker.training import checkpoint

    checkpoint.remove(job_dir(get_settings(), job_id))
