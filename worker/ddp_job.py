"""A job on several devices: one process per device, started the way `torchrun` starts them.

The worker's child that claimed the job (worker/tasks.py) runs `launch`: torch.distributed's
elastic launcher (`python -m torch.distributed.run --standalone`, torchrun itself) starts one
rank per device slot the job holds, each running `main` below: it joins the process group
(NCCL on the job's GPUs, gloo on the CPU), builds the job's spec from the database like a
lone job does (worker/job_spec.py) and trains its share (worker/training/distributed.py).
Rank 0 reports progress, metrics and logs and writes checkpoints and the export; every rank
reads cancel and the time limit from the database.

Each rank leaves a note of how it ended in the job's folder (job_files.rank_outcome), and
`launch` turns the notes into the job's outcome:
- rank 0 succeeded: the job did;
- a rank was cancelled or hit the time limit: the job was (stops are agreed by all ranks);
- a rank failed on the job itself (a ValueError: the data, the model, a setting): the job
  fails with that reason, which every rank would meet again;
- a rank left no note (killed, out of memory) or failed on the group (a peer that vanished):
  `RanksLost`, and the job goes back to the queue to resume from its last checkpoint on as
  many devices as are free then (worker/tasks.py; RELIABILITY rows 15 and 16).
torchrun runs with --max-restarts=0: a restart is the queue's business, so it is counted
against the job's attempts like any other.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.db import get_sessionmaker
from app.jobs.artifacts import job_dir
from app.jobs.models import Device, Job
from worker.db_reporter import DatabaseReporter
from worker.device_slots import visible_devices

log = logging.getLogger("tuneboard.worker")
LOG_TAIL_LINES = 15


class RanksLost(Exception):
    """A rank of the job's process group died without finishing; the job may resume."""


def launch(job: Job, reporter: DatabaseReporter, limit: float) -> Any:  # TrainResult
    """Run `job` across its device slots; returns rank 0's TrainResult, or raises Cancelled,
    ValueError (the job failed) or RanksLost."""
    from worker.model_source import pick_device
    from worker.training import job_files
    from worker.training.distributed import die_with_parent
    from worker.training.reporting import Cancelled
    from worker.training.run import TrainResult

    settings = get_settings()
    slots = list(job.device_ids or [])
    ranks = len(slots)
    folder = job_files.ranks_dir(job_dir(settings, job.id))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    device = pick_device(Device(job.device))
    env = dict(os.environ, TUNEBOARD_RANK_DEVICE=device, PYTHONUNBUFFERED="1")
    if device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = visible_devices(slots)
        where = f"GPUs {env['CUDA_VISIBLE_DEVICES']} (NCCL)"
    else:
        # The worker's threads shared out, so the ranks do not fight over the cores.
        threads = max(1, (settings.torch_threads or os.cpu_count() or 1) // ranks)
        env["OMP_NUM_THREADS"] = str(threads)
        where = f"the CPU (gloo, {threads} thread{'s' if threads > 1 else ''} each)"
    reporter.log(f"starting {ranks} processes with torchrun on {where}")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={ranks}", "--max-restarts=0", "--monitor-interval=1",
        "-m", "worker.ddp_job", str(job.id), str(limit),
    ]  # fmt: skip
    output = folder / "ranks.log"
    with open(output, "ab") as sink:
        # torchrun dies with this process (a hard time limit, a killed worker), and each
        # rank with torchrun (distributed.join), so nothing outlives the job's child.
        code = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        ).wait()

    notes = {r: _read(job_files.rank_outcome(folder.parent, r)) for r in range(ranks)}
    first = notes.get(0) or {}
    if first.get("status") == "succeeded":
        return TrainResult(metrics=first["metrics"], export_path=Path(first["export"]))
    stopped = [n for n in notes.values() if n and n["status"] == "cancelled"]
    if stopped:
        reporter.timed_out = any(n["timed_out"] for n in stopped)
        raise Cancelled("stopped on request")
    failed = [n for n in notes.values() if n and n["status"] == "failed"]
    for note in failed:
        if note["job_error"]:
            reporter.log(note["traceback"])
            raise ValueError(note["reason"])
    silent = [r for r, n in notes.items() if n is None]
    why = f"rank {silent[0]} ended without finishing" if silent else failed[0]["reason"]
    raise RanksLost(f"{why} (torchrun exit code {code}); its output ends:\n{_tail(output)}")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL_LINES:])


def main() -> None:
    """One rank: `python -m worker.ddp_job JOB_ID TIME_LIMIT_SECONDS`, under torchrun."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank %(process)d %(message)s")
    job_id, limit = int(sys.argv[1]), float(sys.argv[2])
    from worker.job_spec import train
    from worker.training import job_files
    from worker.training.atomic_file import replacing
    from worker.training.distributed import QuietReporter, join, leave
    from worker.training.reporting import Cancelled

    group = join(os.environ.get("TUNEBOARD_RANK_DEVICE", "cpu"))
    sessions = get_sessionmaker()
    database = DatabaseReporter(job_id, sessions, time_limit_seconds=limit)
    reporter = database if group.main else QuietReporter(database)
    note: dict[str, Any]
    try:
        with sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None, f"job {job_id} is gone"
        result = train(job, reporter, group)
        note = {"status": "succeeded" if result is not None else "trained"}
        if result is not None:
            note |= {"metrics": result.metrics, "export": str(result.export_path)}
    except Cancelled:
        note = {"status": "cancelled", "timed_out": database.timed_out}
    except Exception as exc:  # noqa: BLE001 - every ending is noted for the launcher
        log.exception("job %s, rank %s failed", job_id, group.rank)
        note = {
            "status": "failed",
            # A ValueError is the job's own (its data, model or settings) and would come back
            # on every attempt; anything else may be the group's (a peer that died).
            "job_error": isinstance(exc, ValueError),
            "reason": str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=5),
        }
    finally:
        leave(group)
    with replacing(job_files.rank_outcome(job_dir(get_settings(), job_id), group.rank)) as tmp:
        tmp.write_text(json.dumps(note))
    sys.exit(1 if note["status"] == "failed" else 0)


if __name__ == "__main__":
    main()
