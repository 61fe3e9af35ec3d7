"""The Celery app as both sides see it. The web only sends task names and job ids, so it
never imports the worker (or torch); the worker registers the tasks on this same app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError

from app.config import Settings, get_settings

TRAIN_TASK = "training.run_job"
PREDICT_TASK = "predict.run"
PREDICT_QUEUE = "predict"  # answered by a worker that keeps models loaded (worker/main.py)
# Batch files have a lane (and worker) of their own, so a long batch never delays a single
# playground question; their worker runs at the training workers' lower CPU priority.
PREDICT_BATCH_QUEUE = "predict-batch"
PREDICT_QUEUES = (PREDICT_QUEUE, PREDICT_BATCH_QUEUE)
# Uploads are parsed and validated off the request path, on a lane of their own, so a check
# never waits behind a training job (worker/main.py, worker/ingest.py).
CHECK_TASK = "datasets.check"
INGEST_QUEUE = "ingest"
CHECK_SOFT_LIMIT_SECONDS = 1800  # then the dataset is invalid with that reason
# A job past its soft time limit stops at its next step; one that does not (a step that
# hangs) is killed by Celery this much later.
HARD_LIMIT_GRACE_SECONDS = 300


def hard_time_limit(settings: Settings, soft_seconds: float | None = None) -> float:
    return (soft_seconds or settings.job_time_limit_seconds) + HARD_LIMIT_GRACE_SECONDS


def make_celery() -> Celery:
    settings = get_settings()
    url = settings.broker_url
    if url.startswith("sqla+sqlite:///"):
        Path(url.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    app = Celery(
        "tuneboard", broker=url, include=["worker.tasks", "worker.predict", "worker.ingest"]
    )
    app.conf.update(
        task_ignore_result=True,  # results live in the database, not in the broker
        task_acks_late=True,  # a job whose worker dies is delivered again ...
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # ... and a busy worker does not hoard queued jobs
        task_default_queue="cpu",
        broker_connection_retry_on_startup=True,
        # Lost the broker mid-job: stop the job (it is re-queued from the database and
        # resumes from its checkpoint) rather than run on for a message nobody can ack.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
    )
    if url.startswith(("redis", "rediss")):
        # Redis hands an unacked message to another worker after this long: longer than any
        # job may run, so a running job's message is never handed out twice.
        timeout = hard_time_limit(settings, settings.max_job_time_limit_seconds) + 3600
        app.conf.broker_transport_options = {"visibility_timeout": timeout}
    return app


celery_app = make_celery()


def _send(name: str, **options: Any) -> None:
    """send_task, once more if the embedded SQLite broker lost a race: two processes that
    declare a new queue at once both insert its row, and the loser's insert fails (kombu's
    SQLAlchemy transport); the second try finds the row."""
    from sqlalchemy.exc import IntegrityError

    try:
        celery_app.send_task(name, **options)
    except IntegrityError:
        celery_app.send_task(name, **options)


def enqueue_training(job_id: int, *, queue: str = "cpu", countdown: float | None = None) -> None:
    """Wake a worker on `queue` for a newly queued job. Call only after the job row is
    committed. The worker runs whichever queued job the database picks next (fair share,
    worker/fair_share.py), not necessarily `job_id`, so Celery's hard limit here is the
    longest any job may have; the claimed job's own limit is enforced by the worker
    (worker/process_limits.py). `countdown`: deliver it that many seconds from now (a job
    waiting for devices to come free)."""
    settings = get_settings()
    hard = hard_time_limit(settings, settings.max_job_time_limit_seconds)
    _send(
        TRAIN_TASK,
        args=[job_id],
        kwargs={"queue": queue},
        queue=queue,
        time_limit=hard,
        countdown=countdown,
    )


def broker_queue_sizes(queues: list[str]) -> dict[str, int]:
    """Messages waiting in each broker queue (not those a worker has taken)."""
    sizes = {}
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in queues:
            try:
                sizes[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:  # never declared, or emptied and removed (Redis): none
                sizes[queue] = 0
    return sizes


def enqueue_prediction(prediction_id: int, *, batch: bool = False) -> None:
    """Send a playground question (or, `batch`, a batch file) to its predict lane, after its
    row is committed."""
    queue = PREDICT_BATCH_QUEUE if batch else PREDICT_QUEUE
    _send(PREDICT_TASK, args=[prediction_id], queue=queue)


def enqueue_check(dataset_id: int) -> None:
    """Send an uploaded dataset to be checked, after its row is committed."""
    _send(
        CHECK_TASK,
        args=[dataset_id],
        queue=INGEST_QUEUE,
        soft_time_limit=CHECK_SOFT_LIMIT_SECONDS,
        time_limit=CHECK_SOFT_LIMIT_SECONDS + 60,
    )
