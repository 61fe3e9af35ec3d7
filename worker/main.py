"""Starting a worker process: what `tuneboard worker` runs.

Two kinds, by queue:
- training (`cpu`, `gpu`): each job in a fresh child process, so memory is returned and peak
  memory is per job;
- predicting (`predict`): one long-lived process that answers playground questions in turn
  and keeps recently used models loaded, so a question costs a forward pass, not a load.
"""

from __future__ import annotations

from app.queue import PREDICT_QUEUE, celery_app


def run_worker(*, queues: str, concurrency: int) -> None:
    from worker.allocator import keep_freed_memory

    keep_freed_memory()  # before anything big is allocated; forked children inherit it
    # Importing the training stack here, once, means a child starts with torch and
    # transformers already loaded instead of spending seconds importing them per job. Nothing
    # runs a torch op before the fork, so no thread pool is copied into the children
    # half-initialised.
    import worker.predict  # noqa: F401
    import worker.tasks  # noqa: F401
    import worker.training.run  # noqa: F401

    names = {q.strip() for q in queues.split(",") if q.strip()}
    if names == {PREDICT_QUEUE}:
        pool = ["--pool=solo"]  # the process that loads a model is the one that keeps it
    elif PREDICT_QUEUE in names:
        raise SystemExit(
            f"the {PREDICT_QUEUE!r} queue needs a worker of its own (it keeps models loaded); "
            "start one with `tuneboard worker --queues predict`"
        )
    else:
        pool = [f"--concurrency={concurrency}", "--max-tasks-per-child=1"]
    from worker.heartbeat import Heartbeat

    heartbeat = Heartbeat(sorted(names))
    heartbeat.start()
    try:
        celery_app.worker_main(
            [
                "worker",
                "--loglevel=INFO",
                f"--queues={','.join(sorted(names))}",
                *pool,
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        heartbeat.stop()
