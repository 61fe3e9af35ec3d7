"""A worker's own heartbeat, and the housekeeping every live worker shares.

A thread in the worker's main process (the parent of the processes that train) does, every
TUNEBOARD_WORKER_BEAT_SECONDS:
- beat: upsert this worker's row (queues, device), so the dashboard lists it and "auto"
  jobs are routed to gpu only while a GPU worker is alive;
- every TUNEBOARD_MAINTENANCE_SECONDS, housekeeping that any one worker may do and several
  may do at once (every change is a guarded UPDATE or an idempotent re-send):
  - reap: a job `running` whose heartbeat stopped goes back to `queued` (or fails after
    TUNEBOARD_MAX_ATTEMPTS, or past its hard time limit), and is re-sent;
  - resend: queued jobs whose messages the broker lost (a Redis restart) are sent again;
  - reroute: queued "auto" jobs waiting on gpu when no GPU worker is alive go to cpu.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from app.config import get_settings
from app.db import get_sessionmaker
from app.queue import broker_queue_sizes
from app.workers import service as workers
from worker import housekeeping
from worker.device_slots import gpu_names, worker_id

log = logging.getLogger("tuneboard.worker")
SETTLE = timedelta(seconds=15)  # a new job's first message may still be on its way

# The pool forks a training process while this thread may be inside SQLite or the broker
# client. A child forked mid-call inherits their locks held, with no thread left to release
# them, and hangs at its first query (seen: a job received, never claimed). So a fork waits
# for the heartbeat's current round, and the heartbeat never starts one mid-fork.
# The same guard covers the embedded broker's calls (guard_sql_broker), which the heartbeat
# makes too (broker_queue_sizes): hence reentrant.
_round = threading.RLock()
os.register_at_fork(
    before=_round.acquire, after_in_parent=_round.release, after_in_child=_round.release
)


def guard_sql_broker() -> None:
    """The embedded broker (kombu's SQL transport, on SQLite) is polled by the worker's main
    thread while the pool forks children from another. SQLite takes a process-wide mutex to
    lock its files, so a child forked while a poll held it inherits it locked and hangs at
    its first query (seen: a child stuck in sqlite3.connect before its claim, a suite run on
    2026-12-01). Each call into the transport is made under the fork guard."""
    from kombu.transport import sqlalchemy as sql_transport

    channel = sql_transport.Channel
    for name in ("_open", "_new_queue", "_put", "_get", "_purge", "_size"):
        original = getattr(channel, name)

        def guarded(self, *args, __original=original, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            with _round:
                return __original(self, *args, **kwargs)

        setattr(channel, name, guarded)


def describe_device() -> str:
    """ "cuda: <names>" where nvidia-smi sees GPUs, else "cpu (N cores)"."""
    gpus = gpu_names()
    return "cuda: " + ", ".join(gpus) if gpus else f"cpu ({os.cpu_count()} cores)"


class Heartbeat(threading.Thread):
    def __init__(self, queues: list[str], device_count: int = 1) -> None:
        super().__init__(name="tuneboard-heartbeat", daemon=True)
        self.queues = queues
        self.device_count = device_count  # its device slots (worker/device_slots.py)
        self.worker_id = worker_id()
        self.device = describe_device()
        self.stopping = threading.Event()

    def run(self) -> None:
        settings = get_settings()
        last_maintenance = -float("inf")  # housekeeping once at start, too
        while not self.stopping.is_set():
            try:
                with _round:
                    self.beat()
                    if time.monotonic() - last_maintenance >= settings.maintenance_seconds:
                        last_maintenance = time.monotonic()
                        self.maintain()
            except Exception:  # noqa: BLE001 - a database or broker outage must not end it
                log.exception("heartbeat: will try again")
            self.stopping.wait(settings.worker_beat_seconds)

    def beat(self) -> None:
        with get_sessionmaker()() as session:
            workers.beat(
                session,
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues,
                device=self.device,
                device_count=self.device_count,
            )

    def maintain(self) -> None:
        settings = get_settings()
        with get_sessionmaker()() as session:
            requeued = housekeeping.reap_stale(
                session,
                stale_after=timedelta(seconds=settings.job_stale_seconds),
                max_attempts=settings.max_attempts,
            )
            if requeued:
                log.warning("re-queued jobs left running by a lost worker: %s", requeued)
            gpu_alive = any(workers.GPU_QUEUE in w.queues for w in workers.alive(session))
            moved = housekeeping.reroute_auto(session, gpu_alive=gpu_alive, settle=SETTLE)
            if moved:
                log.warning("no GPU worker is alive: auto jobs moved to the cpu queue: %s", moved)
            training = [q for q in self.queues if q in (workers.CPU_QUEUE, workers.GPU_QUEUE)]
            if training:
                resent = housekeeping.resend_lost(
                    session, broker_queue_sizes(training), settle=SETTLE
                )
                if resent:
                    log.warning("re-sent queued jobs the broker had lost: %s", resent)

    def stop(self) -> None:
        self.stopping.set()
        try:
            with get_sessionmaker()() as session:
                workers.leave(session, self.worker_id)
        except Exception:  # noqa: BLE001 - shutting down anyway; the row times out
            log.warning("heartbeat: could not sign off")
