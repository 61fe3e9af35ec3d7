"""Starting a worker process: what `tuneboard worker` runs."""

from __future__ import annotations

from app.queue import celery_app


def run_worker(*, queues: str, concurrency: int) -> None:
    # Each job runs in a fresh child forked from this process. Importing the training stack
    # here, once, means a child starts with torch and transformers already loaded instead of
    # spending seconds importing them per job. Nothing runs a torch op before the fork, so no
    # thread pool is copied into the children half-initialised.
    import worker.tasks  # noqa: F401
    import worker.training.run  # noqa: F401

    celery_app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            f"--queues={queues}",
            f"--concurrency={concurrency}",
            # A fresh process per job: memory is returned and peak memory is per job.
            "--max-tasks-per-child=1",
            "--without-gossip",
            "--without-mingle",
        ]
    )
