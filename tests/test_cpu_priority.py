"""Training gives way to the web server: the process that trains a job, and the batch
prediction worker, run at a lower CPU priority (a higher nice value) than the web server and
the single-question worker; and a training process ends itself at its job's hard limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import get_settings
from app.db import get_sessionmaker
from app.workers.models import Worker
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import FINISHED, upload_csv
from tests.processes import ROOT, embedded_env, free_port, stop_group, wait_for


def nice_of(pid: int) -> int:
    """Field 19 of /proc/<pid>/stat, as the kernel schedules the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # fields[0] is field 3 (state)


def policy_of(pid: int) -> int:
    """Field 41 of /proc/<pid>/stat: the scheduling class (os.SCHED_OTHER, os.SCHED_IDLE…)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[38])


def children_of(pid: int) -> dict[int, str]:
    """Live child processes of `pid` and their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    return {child: cmd.decode(errors="replace") for child, cmd in found.items()}


def test_the_training_process_runs_at_a_lower_priority_than_the_web(
    client: TestClient, worker: Path, tiny_model_id: str, tmp_path: Path
) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "n.csv", labelled_texts(10)))
    body = {"dataset_id": dataset["id"], "model": tiny_model_id, "strategy": "finetune_full"}
    job = client.post("/api/v1/jobs", json={**body, "params": {"epochs": 200, "batch_size": 2}})
    assert job.status_code == 201, job.text
    url = f"/api/v1/jobs/{job.json()['id']}"
    try:
        wait_for(lambda: client.get(url).json()["step"] > 0, timeout=120, what="training steps")
        with get_sessionmaker()() as session:
            pids = [w.pid for w in session.query(Worker).all() if w.queues == ["cpu"]]
        training = [
            child for pid in pids if Path(f"/proc/{pid}").exists() for child in children_of(pid)
        ]
        assert training, f"no training process under the cpu workers {pids}"
        web = os.getpriority(os.PRIO_PROCESS, 0)  # this process serves the TestClient's pages
        for pid in training:
            assert nice_of(pid) == max(web, get_settings().worker_nice) > web, pid
            assert policy_of(pid) == os.SCHED_IDLE, pid  # the web preempts it at once
        assert policy_of(os.getpid()) == os.SCHED_OTHER
    finally:
        client.post(url + "/cancel")
        wait_for(lambda: client.get(url).json()["status"] in FINISHED, timeout=60, what="cancel")


def test_serve_starts_each_lane_at_its_priority(tmp_path: Path) -> None:
    """`tuneboard serve`: the web server and the question worker at the priority it was
    started with; the training and batch workers at TUNEBOARD_WORKER_NICE."""
    port = free_port()
    env = {**embedded_env(tmp_path, port), "TUNEBOARD_WORKER_NICE": "7"}
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            web = nice_of(proc.pid)

            def lanes() -> dict[str, int] | None:
                found = {
                    cmd.split("--queues=")[1].split()[0]: nice_of(pid)
                    for pid, cmd in children_of(proc.pid).items()
                    if "--queues=" in cmd
                }
                wanted = {"cpu", "predict", "predict-batch"}
                ready = wanted <= set(found) and found["cpu"] == found["predict-batch"] != web
                return found if ready else None

            found = wait_for(lanes, timeout=90, what=f"the workers (log: {log.name})")
            assert found["cpu"] == found["predict-batch"] == max(web, 7)
            assert found["predict"] == web  # a person waits on each single question
            policies = {
                cmd.split("--queues=")[1].split()[0]: policy_of(pid)
                for pid, cmd in children_of(proc.pid).items()
                if "--queues=" in cmd
            }
            assert policies["cpu"] == policies["predict-batch"] == os.SCHED_IDLE
            assert policies["predict"] == policies["ingest"] == policy_of(proc.pid)
        finally:
            stop_group(proc)


def test_a_training_process_ends_itself_at_its_hard_limit() -> None:
    """worker/tasks.py arms this as a training child claims a job; the kernel ends the
    process even while Python is busy inside a step, and the reaper then fails the silent job
    as a time limit (tests/test_reaper.py)."""
    busy = (
        "from worker.process_limits import arm_hard_time_limit\n"
        "arm_hard_time_limit(0.5)\n"
        "while True:\n"
        "    sum(range(10**6))\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", busy], cwd=ROOT, timeout=60)
    assert result.returncode == -signal.SIGALRM
    assert time.monotonic() - started < 30
    disarmed = (
        "import time\n"
        "from worker.process_limits import arm_hard_time_limit, disarm_hard_time_limit\n"
        "arm_hard_time_limit(0.3)\n"
        "disarm_hard_time_limit()\n"
        "time.sleep(0.6)\n"
    )
    assert subprocess.run([sys.executable, "-c", disarmed], cwd=ROOT, timeout=60).returncode == 0
