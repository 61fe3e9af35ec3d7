"""Jobs on several devices through the real stack, on this CPU: `tuneboard serve --no-worker`
and a `tuneboard worker` started with TUNEBOARD_WORKER_DEVICES=2 (two device slots, which
on a CPU are gloo processes), on a SQLite database and broker of the test's own.

- a devices=2 job from the API runs as two torchrun ranks and succeeds;
- one rank SIGKILLed mid-job: the job goes back to the queue, resumes from its checkpoint on
  two ranks again, and succeeds, its chart continuing;
- the scheduler: two one-device jobs run at once, each on its own slot, while a two-device
  job waits for both slots, and the slots in use never exceed two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts import PASSWORD, sign_in
from tests.factories import labelled_texts, make_tiny_bert, write_csv
from tests.jobs_api import CHECKED, FINISHED
from tests.processes import ROOT, cli_process, embedded_env, free_port, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("devices")
    make_tiny_bert(home / "models" / "tiny-bert")
    port = free_port()
    env = {
        **embedded_env(home, port),
        "TUNEBOARD_WORKER_DEVICES": "2",
        "TUNEBOARD_WORKER_BEAT_SECONDS": "1",
        "TUNEBOARD_DEVICE_WAIT_SECONDS": "1",
        "TUNEBOARD_CHECKPOINT_EVERY_SECONDS": "1",
        "TUNEBOARD_TORCH_THREADS": "2",
    }
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], env=env, cwd=ROOT, check=True)
    subprocess.run(
        [sys.executable, "-m", "app.cli", "create-user", "ops", "--password-stdin"],
        input=PASSWORD + "\n", text=True, env=env, cwd=ROOT, check=True,
    )  # fmt: skip
    logs = home / "logs"
    logs.mkdir()
    with (
        cli_process(["serve", "--no-worker", "--port", str(port)], env, logs / "web.log"),
        cli_process(["worker", "--queues", "ingest"], env, logs / "ingest.log"),
        cli_process(["worker", "--queues", "cpu"], env, logs / "worker.log"),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        wait_for(lambda: _up(client), timeout=90, what="the web server")
        sign_in(client, "ops")
        wait_for(lambda: _slots(client) == 2, timeout=60, what="the worker's two device slots")
        path = write_csv(home / "d.csv", labelled_texts(60))
        response = client.post(
            "/api/v1/datasets", files={"file": (path.name, path.read_bytes())}, params=CHECKED
        )
        assert response.status_code == 201, response.text
        yield {"client": client, "home": home, "logs": logs, "dataset": response.json()["id"]}


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/login").status_code == 200
    except httpx.HTTPError:
        return False


def _slots(client: httpx.Client) -> int:
    workers = client.get("/api/v1/workers").json()["workers"]
    return max((w["device_count"] for w in workers if "cpu" in w["queues"]), default=0)


def submit(stack: dict[str, Any], *, devices: int, epochs: int) -> int:
    body = {
        "dataset_id": stack["dataset"],
        "model": "local/tiny-bert",
        "strategy": "finetune_full",
        "device": "cpu",
        "params": {"learning_rate": 1e-3, "batch_size": 4, "epochs": epochs, "devices": devices},
    }
    response = stack["client"].post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def job(stack: dict[str, Any], job_id: int) -> dict[str, Any]:
    return stack["client"].get(f"/api/v1/jobs/{job_id}").json()


def finished(stack: dict[str, Any], job_id: int, timeout: float = 240) -> dict[str, Any]:
    done = wait_for(
        lambda: (j := job(stack, job_id))["status"] in FINISHED and j,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )
    worker_log = (stack["logs"] / "worker.log").read_text()[-3000:]
    assert done["status"] == "succeeded", (done["error"], worker_log)
    return done


def logs(stack: dict[str, Any], job_id: int) -> list[str]:
    return [line["message"] for line in stack["client"].get(f"/api/v1/jobs/{job_id}/logs").json()]


def rank_processes(job_id: int) -> dict[int, int]:
    """LOCAL_RANK → pid of the job's rank processes (torchrun's children)."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"worker.ddp_job" not in args or b"torch.distributed.run" in args:
                continue
            if str(job_id).encode() not in args:
                continue
            environ = dict(
                v.split(b"=", 1) for v in (entry / "environ").read_bytes().split(b"\0") if b"=" in v
            )
            ranks[int(environ[b"LOCAL_RANK"])] = int(entry.name)
        except (OSError, ValueError, KeyError):
            continue
    return ranks


def test_a_two_device_job_survives_a_lost_rank(stack: dict[str, Any]) -> None:
    job_id = submit(stack, devices=2, epochs=12)
    checkpoint = stack["home"] / "data" / "jobs" / str(job_id) / "checkpoint.pt"
    wait_for(
        lambda: job(stack, job_id)["progress"] >= 0.3 and checkpoint.is_file(),
        timeout=180,
        what="the job to pass 30 % with a checkpoint",
    )
    running = job(stack, job_id)
    assert running["status"] == "running" and running["attempts"] == 1
    before = stack["client"].get(f"/api/v1/jobs/{job_id}/metrics").json()["series"]
    ranks = rank_processes(job_id)
    assert sorted(ranks) == [0, 1], ranks
    os.kill(ranks[1], signal.SIGKILL)  # rank 1, without warning

    done = finished(stack, job_id)
    assert done["attempts"] == 2
    lines = logs(stack, job_id)
    assert sum("starting 2 processes with torchrun" in line for line in lines) == 2, lines
    assert any("a device process was lost" in line for line in lines), lines
    assert any("resumed from a checkpoint" in line for line in lines), lines
    assert any("2 × cpu, data-parallel" in line for line in lines), lines
    assert done["results"]["test_accuracy"] >= 0.8
    series = stack["client"].get(f"/api/v1/jobs/{job_id}/metrics").json()["series"]
    for name in ("train_loss", "val_loss"):
        steps = series[name]["step"]
        assert steps == sorted(set(steps)), f"{name}: a step reported twice: {steps}"
    kept = [s for s in before["val_loss"]["step"] if s <= series["val_loss"]["step"][-1]]
    assert set(kept) <= set(series["val_loss"]["step"])  # the chart continues
    assert len(series["val_loss"]["step"]) == 12
    assert not checkpoint.exists()


def test_jobs_share_the_slots_and_wait_for_enough_of_them(stack: dict[str, Any]) -> None:
    first, second = (submit(stack, devices=1, epochs=10) for _ in range(2))
    both = submit(stack, devices=2, epochs=2)
    jobs = (first, second, both)
    seen_together, seen_waiting = False, False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        states = {j: job(stack, j) for j in jobs}
        running = [s for s in states.values() if s["status"] == "running"]
        # Never more slots in use than the worker has.
        assert sum(s["params"]["devices"] for s in running) <= 2, running
        if states[first]["status"] == states[second]["status"] == "running":
            seen_together = True
            seen_waiting |= states[both]["status"] == "queued"
        if all(s["status"] in FINISHED for s in states.values()):
            break
        time.sleep(0.3)
    for j in jobs:
        finished(stack, j, timeout=5)
    assert seen_together, "the two one-device jobs never ran at the same time"
    assert seen_waiting, "the two-device job did not wait while the slots were taken"
    assert any("2 × cpu, data-parallel" in line for line in logs(stack, both))
