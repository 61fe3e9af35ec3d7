"""The Celery app as both sides see it. The web only sends task names and job ids, so it
never imports the worker (or torch); the worker registers the tasks on this same app."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from app.config import get_settings

TRAIN_TASK = "training.run_job"
PREDICT_TASK = "predict.run"
PREDICT_QUEUE = "predict"  # answered by a worker that keeps models loaded (worker/main.py)
# The longest a job may run; the broker must not hand its message to another worker sooner.
MAX_JOB_SECONDS = 24 * 3600


def make_celery() -> Celery:
    settings = get_settings()
    url = settings.broker_url
    if url.startswith("sqla+sqlite:///"):
        Path(url.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    app = Celery("tuneboard", broker=url, include=["worker.tasks", "worker.predict"])
    app.conf.update(
        task_ignore_result=True,  # results live in the database, not in the broker
        task_acks_late=True,  # a job whose worker dies is delivered again ...
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # ... and a busy worker does not hoard queued jobs
        task_default_queue="cpu",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if url.startswith(("redis", "rediss")):
        # Redis hands an unacked message to another worker after this long.
        app.conf.broker_transport_options = {"visibility_timeout": MAX_JOB_SECONDS + 3600}
    return app


celery_app = make_celery()


def enqueue_training(job_id: int, *, queue: str = "cpu") -> None:
    """Send a job id to the workers. Call only after the job row is committed."""
    celery_app.send_task(TRAIN_TASK, args=[job_id], queue=queue)


def enqueue_prediction(prediction_id: int) -> None:
    """Send a playground question to the predict workers, after its row is committed."""
    celery_app.send_task(PREDICT_TASK, args=[prediction_id], queue=PREDICT_QUEUE)
