"""Starting a worker process: what `tuneboard worker` runs.

Two kinds, by queue:
- training (`cpu`, `gpu`): each job in a fresh child process, so memory is returned and peak
  memory is per job;
- predicting (`predict`): one long-lived pool process that answers playground questions in
  turn and keeps recently used models loaded, so a question costs a forward pass, not a load
  (replaced by a fresh one past TUNEBOARD_PREDICT_WORKER_MAX_RSS_MB);
  batch files go to `predict-batch`, a worker of the same kind of their own, so a long batch
  never delays a single question;
- checking uploads (`ingest`): the parse and validation of each stored upload
  (worker/ingest.py), one at a time, in one pool process that Celery replaces after any
  check that took it past INGEST_CHILD_MAX_RSS_MB, so a big file's memory never stays (a
  fresh process for every check cost about half a second an upload, and a fork each). A lane
  of its own: a check must not wait behind a training job that may run for days.
  `tuneboard serve` starts one.
Training and batch workers run at a lower CPU priority (TUNEBOARD_WORKER_NICE) than the web
server and the single-question worker (worker/process_limits.py).
"""

from __future__ import annotations

import os

from app.queue import INGEST_QUEUE, PREDICT_BATCH_QUEUE, PREDICT_QUEUE, PREDICT_QUEUES, celery_app
from worker.device_slots import SLOTS_VARIABLE

# A checking process is about 100 MB between checks; one that read a big file is replaced.
INGEST_CHILD_MAX_RSS_MB = 400


def run_worker(*, queues: str, concurrency: int | None) -> None:
    from worker.allocator import keep_freed_memory

    keep_freed_memory()  # before anything big is allocated; forked children inherit it
    # Importing the training stack here, once, means a child starts with torch and
    # transformers already loaded instead of spending seconds importing them per job. Nothing
    # runs a torch op before the fork, so no thread pool is copied into the children
    # half-initialised.
    import worker.predict  # noqa: F401
    import worker.tasks  # noqa: F401

    names = {q.strip() for q in queues.split(",") if q.strip()}
    if INGEST_QUEUE in names and names != {INGEST_QUEUE}:
        raise SystemExit(
            f"the {INGEST_QUEUE!r} queue needs a worker of its own (an upload's check must "
            f"never wait behind a job); start one with `tuneboard worker --queues {INGEST_QUEUE}`"
        )
    # A checker reads files; only a generation upload's token count imports transformers
    # (and torch), on its first use, so checkers of other data never pay for them.
    if names != {INGEST_QUEUE}:
        # The first optimizer a process makes imports torch._dynamo (1.2 s, 800 modules):
        # paid here once rather than inside every job's training time.
        import torch._dynamo  # noqa: F401

        import worker.training.run  # noqa: F401
        import worker.training.sentence_model  # noqa: F401  # sentence-transformers: 3.5 s
    else:  # someone waits on each check: ask an SQL broker (embedded) 5×/s, not 1×/s
        # (kombu's SQL transport hands every transport option to create_engine, so the
        # polling interval cannot go there; Redis pushes messages and needs none)
        from kombu.transport import sqlalchemy as sql_transport

        sql_transport.Transport.polling_interval = 0.2
    if len(names) == 1 and names <= set(PREDICT_QUEUES):
        # One pool process: the one that loads a model keeps it for later tasks. It lives on,
        # so Celery replaces it after a task that took its peak memory past the ceiling
        # (models load again in the new one); --pool=solo would have no such check.
        from app.config import get_settings as settings

        ceiling_kb = settings().predict_worker_max_rss_mb * 1024
        pool = ["--concurrency=1", f"--max-memory-per-child={ceiling_kb}"]
    elif names & set(PREDICT_QUEUES):
        lane = sorted(names & set(PREDICT_QUEUES))[0]
        raise SystemExit(
            f"the {lane!r} queue needs a worker of its own (it keeps models loaded, and "
            f"questions on {PREDICT_QUEUE!r} must never wait behind files on "
            f"{PREDICT_BATCH_QUEUE!r}); start one with `tuneboard worker --queues {lane}`"
        )
    elif names == {INGEST_QUEUE}:
        pool = ["--concurrency=1", f"--max-memory-per-child={INGEST_CHILD_MAX_RSS_MB * 1024}"]
    else:
        # One child per device slot (worker/device_slots.py): a job holds one or several.
        from worker.device_slots import announce

        slots = announce(sorted(names), concurrency)
        pool = [f"--concurrency={slots}", "--max-tasks-per-child=1"]
    if names - {PREDICT_QUEUE, "ingest"}:  # training and batch files give way to the web
        from app.config import get_settings
        from worker.process_limits import lower_priority

        limits = get_settings()
        lower_priority(limits.worker_nice, sched_idle=limits.worker_sched_idle)
    from app.config import get_settings as current_settings
    from worker.heartbeat import Heartbeat, guard_sql_broker

    if current_settings().broker_url.startswith("sqla+"):
        guard_sql_broker()

    heartbeat = Heartbeat(sorted(names), device_count=int(os.environ.get(SLOTS_VARIABLE, "1")))
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
