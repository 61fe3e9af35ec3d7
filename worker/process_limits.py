"""What a worker process does to itself: give way to the web server, and die at a job's hard
time limit.

CPU priority: on the embedded default the web server and the training process share the
machine, and a training step keeps every core busy; at equal priority a page request waits
behind it (bench/load_pages.py: p99 62× idle). A training or batch-prediction worker raises
its own nice value as it starts, and the processes it forks inherit it, so the scheduler
runs the web server first whenever both want a core and training still gets every cycle the
web leaves idle. Linux applies nice values between processes of one session (autogroup):
`tuneboard serve` starts its workers in its own session, so there it takes effect; see the
README for workers started elsewhere.

Hard time limit: a training message only wakes a worker, which then runs the job the
database picks (worker/fair_share.py), so Celery's per-message hard limit is the longest
any job may have. The claimed job's own limit is enforced here: the kernel delivers SIGALRM
at the hard limit, and with its default action that ends the process even inside a step
that never returns to Python. The reaper then fails the silent job as a time limit
(app/jobs/service.reap_stale), as it did when Celery killed it.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("tuneboard.worker")


def lower_priority(nice: int, *, sched_idle: bool = False) -> int:
    """Raise this process's nice value to `nice` (never lower it: that needs privileges)
    and, with `sched_idle`, move it to Linux's idle scheduling class; returns the nice value
    now in effect.

    Nice 10 gives the web about ten times training's share of a contended core, but a page
    request that wakes up may still wait for a training thread's time slice to run out. In
    the idle class it never waits: the scheduler preempts an idle-class thread as soon as
    anything else is runnable (bench/load_pages.py measures both). Threads and processes
    made later (torch's thread pool, Celery's pool processes, each job's child) inherit it."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = max(0, min(19, nice))
    if wanted > current:
        os.setpriority(os.PRIO_PROCESS, 0, wanted)
        log.info("CPU priority lowered: nice %d (TUNEBOARD_WORKER_NICE)", wanted)
    if sched_idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            log.info("scheduling class: idle (TUNEBOARD_WORKER_SCHED_IDLE)")
        except OSError as exc:  # a container may forbid it: the nice value still applies
            log.warning("could not enter the idle scheduling class: %s", exc)
    return os.getpriority(os.PRIO_PROCESS, 0)


def arm_hard_time_limit(seconds: float) -> None:
    """End this process `seconds` from now unless disarmed; only for a process of its own
    (a training child runs one job and exits)."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # terminate: no Python code has to run
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))


def disarm_hard_time_limit() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)
