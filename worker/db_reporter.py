"""The reporter a worker hands to the training code: the only link from the loop to the world.

It writes progress (which is also the heartbeat), metric rows and log lines through the jobs
service, and answers "was cancel requested?" from the database.

Every write waits out a database that is briefly away (PostgreSQL restarting, SQLite locked by
a long writer) by retrying with backoff, rather than failing a job hours into its run or
dropping a metric row: the loop simply pauses until the database answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from worker import job_records

log = logging.getLogger("tuneboard.worker")

# Progress rows are throttled: the chart and progress bar need ~1 update a second, and
# SQLite serialises writers.
PROGRESS_EVERY_SECONDS = 1.0
CANCEL_CHECK_EVERY_SECONDS = 0.5
# How long a write keeps retrying before the job fails (and is resumed from its checkpoint
# by the next attempt): shorter than the stale-heartbeat timeout would be pointless.
RETRY_WRITES_FOR_SECONDS = 90.0
T = TypeVar("T")


class DatabaseReporter:
    def __init__(
        self,
        job_id: int,
        sessions: sessionmaker[Session],
        *,
        time_limit_seconds: float | None = None,
    ) -> None:
        self.job_id = job_id
        self.sessions = sessions
        # The soft time limit: past it, the next step stops the run like a cancel would.
        self._deadline = time.monotonic() + time_limit_seconds if time_limit_seconds else None
        self.timed_out = False
        self._phase = ""
        self._phase_started = time.monotonic()
        self._phase_first_step = 0
        self._last_progress = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False

    def write(self, what: str, change: Callable[[Session], T]) -> T:
        """Run `change` in a fresh session, retrying while the database is unreachable."""
        deadline = time.monotonic() + RETRY_WRITES_FOR_SECONDS
        delay = 0.25
        while True:
            try:
                with self.sessions() as session:
                    return change(session)
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "job %s: database unavailable while writing %s (%s); retrying in %.1f s",
                    self.job_id, what, type(exc.orig).__name__, delay,
                )  # fmt: skip
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def log(self, message: str) -> None:
        log.info("job %s: %s", self.job_id, message)
        self.write("a log line", lambda session: job_records.add_log(session, self.job_id, message))

    def progress(self, *, step: int, total_steps: int, phase: str) -> None:
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._phase_started, self._phase_first_step = phase, now, step
        done = step >= total_steps
        if not done and now - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress = now
        steps_in_phase = step - self._phase_first_step
        eta = None
        if steps_in_phase > 0 and total_steps > step:
            eta = (now - self._phase_started) / steps_in_phase * (total_steps - step)
        self.write(
            "progress",
            lambda session: job_records.record_progress(
                session, self.job_id, step=step, total_steps=total_steps, phase=phase, eta=eta
            ),
        )

    def metrics(self, *, step: int, epoch: float, values: dict[str, float]) -> None:
        self.write(
            "metrics",
            lambda session: job_records.add_metrics(
                session, self.job_id, step=step, epoch=epoch, values=values
            ),
        )

    def rewind(self, *, step: int) -> None:
        dropped = self.write(
            "a rewind",
            lambda session: job_records.drop_metrics_after(session, self.job_id, step=step),
        )
        if dropped:
            log.info("job %s: dropped %s metric points after step %s", self.job_id, dropped, step)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self._deadline is not None and now > self._deadline:
            self.timed_out = True
            return True
        if not self._cancelled and now - self._last_cancel_check >= CANCEL_CHECK_EVERY_SECONDS:
            self._last_cancel_check = now
            self._cancelled = self.write(
                "a cancel check", lambda session: job_records.cancel_requested(session, self.job_id)
            )
        return self._cancelled
