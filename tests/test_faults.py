"""Faults with real processes on the production stack: PostgreSQL, a Redis server of the
test's own (so it can be killed and restarted), `tuneboard serve --no-worker` and
`tuneboard worker` processes. Each test is bounded in time and stops what it started.

- the worker (and its training process) SIGKILLed mid-job → a new worker re-queues the job
  and it resumes from its last checkpoint, its metric history intact;
- Redis restarted empty with jobs queued → the workers re-send them from the database, and
  all run;
- the web server restarted mid-job → the job's progress is shown again;
- PostgreSQL stopped for seconds mid-job → the job's writes wait, and no metric row is lost.
(A process killed while writing a checkpoint: tests/test_checkpoints.py.)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts import PASSWORD, sign_in
from tests.factories import labelled_texts, make_tiny_bert, write_csv
from tests.jobs_api import CHECKED
from tests.processes import ROOT, cli_process, free_port, wait_for

ADMIN_URL = os.environ.get(
    "TUNEBOARD_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRED = os.environ.get("TUNEBOARD_TEST_REQUIRE_POSTGRES") == "1"
FINISHED = {"succeeded", "failed", "cancelled"}
EPOCHS = 40


class RedisServer:
    """A real redis-server on a port of its own, without persistence: a restart loses every
    queued message, as a crashed Redis without an append-only file would."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._answers, timeout=20, interval=0.1, what="redis-server to answer")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A fresh PostgreSQL database, a Redis server and the environment for processes."""
    psycopg = pytest.importorskip("psycopg")
    if shutil.which("redis-server") is None:
        if REQUIRED:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if REQUIRED:
            raise
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}")
    name = f"tuneboard_faults_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    folder = tmp_path_factory.mktemp("faults")
    models = folder / "models"
    make_tiny_bert(models / "tiny-bert")
    redis = RedisServer(folder)
    redis.start()
    server = ADMIN_URL.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
    env = {
        **os.environ,
        "TUNEBOARD_DATABASE_URL": f"{server}/{name}",
        "TUNEBOARD_BROKER_URL": redis.url,
        "TUNEBOARD_DATA_DIR": str(folder / "data"),
        "TUNEBOARD_MODEL_ROOTS": f'["{models}"]',
        # Fast clocks, so that faults are noticed in seconds rather than minutes.
        "TUNEBOARD_JOB_STALE_SECONDS": "20",  # long enough for a loaded machine
        "TUNEBOARD_WORKER_BEAT_SECONDS": "1",
        "TUNEBOARD_MAINTENANCE_SECONDS": "2",
        "TUNEBOARD_CHECKPOINT_EVERY_SECONDS": "1",
        "TUNEBOARD_TORCH_THREADS": "1",
    }
    subprocess.run(
        [sys.executable, "-m", "app.cli", "create-user", "ops", "--password-stdin"],
        input=PASSWORD + "\n",
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    try:
        yield {"env": env, "redis": redis, "folder": folder}
    finally:
        redis.stop()
        admin.close()  # a fresh connection: a test may have restarted PostgreSQL since
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as again:
            again.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def web(stack: dict[str, Any], log: Path) -> Iterator[httpx.Client]:
    port = free_port()
    args = ["serve", "--no-worker", "--port", str(port)]
    with (
        cli_process(args, stack["env"], log),
        # What checks uploads, beside the web server as in docker-compose.yml.
        cli_process(["worker", "--queues", "ingest"], stack["env"], log.with_suffix(".ingest.log")),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        wait_for(lambda: _up(client), timeout=60, what="the web server")
        sign_in(client, "ops")
        yield client


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/login").status_code == 200
    except httpx.HTTPError:
        return False


def worker(stack: dict[str, Any], log: Path):  # noqa: ANN201 - a context manager
    return cli_process(["worker", "--queues", "cpu"], stack["env"], log)


def upload(client: httpx.Client, tmp: Path, per_class: int) -> int:
    path = write_csv(tmp / f"d{per_class}.csv", labelled_texts(per_class))
    response = client.post(
        "/api/v1/datasets", files={"file": (path.name, path.read_bytes())}, params=CHECKED
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def job(client: httpx.Client, dataset_id: int, **params: Any) -> int:
    body = {
        "dataset_id": dataset_id,
        "model": "local/tiny-bert",
        "strategy": "finetune_full",
        "device": "cpu",
        "params": {"learning_rate": 1e-3, "batch_size": 4, **params},
    }
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def state(client: httpx.Client, job_id: int) -> dict[str, Any]:
    return client.get(f"/api/v1/jobs/{job_id}").json()


def finished(client: httpx.Client, job_id: int, timeout: float) -> dict[str, Any]:
    return wait_for(
        lambda: (j := state(client, job_id))["status"] in FINISHED and j,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def test_worker_killed_mid_job_resumes_from_its_checkpoint(stack, tmp_path: Path) -> None:
    logs = tmp_path
    with web(stack, logs / "web.log") as client:
        # The tiny model trains ~200 steps a second: 40 epochs of 60 steps take ~15 s.
        dataset = upload(client, tmp_path, 100)
        job_id = job(client, dataset, epochs=EPOCHS)
        checkpoint = Path(stack["folder"]) / "data" / "jobs" / str(job_id) / "checkpoint.pt"
        with worker(stack, logs / "worker-1.log") as first:
            wait_for(
                lambda: state(client, job_id)["progress"] >= 0.3 and checkpoint.is_file(),
                timeout=120,
                what="the job to pass 30 % with a checkpoint",
            )
            before = client.get(f"/api/v1/jobs/{job_id}/metrics").json()["series"]
            os.killpg(first.pid, 9)  # the worker and its training process, without warning
            first.wait(timeout=10)
        lost = state(client, job_id)
        assert lost["status"] == "running"  # nobody has noticed yet

        with worker(stack, logs / "worker-2.log"):
            done = finished(client, job_id, timeout=180)
        assert done["status"] == "succeeded", (done["error"], (logs / "worker-2.log").read_text())
        assert done["attempts"] == 2
        log_lines = [line["message"] for line in client.get(f"/api/v1/jobs/{job_id}/logs").json()]
        assert any("resumed from a checkpoint" in line for line in log_lines), log_lines
        series = client.get(f"/api/v1/jobs/{job_id}/metrics").json()["series"]
        for name in ("train_loss", "val_loss"):
            steps = series[name]["step"]
            assert steps == sorted(set(steps)), f"{name}: a step reported twice: {steps}"
        # What was drawn before the kill and kept is still there, point for point.
        kept = [s for s in before["val_loss"]["step"] if s <= series["val_loss"]["step"][-1]]
        assert set(kept) <= set(series["val_loss"]["step"])
        assert len(series["val_loss"]["step"]) == EPOCHS  # one an epoch: none lost or doubled
        assert not checkpoint.exists()  # published: the checkpoint is removed


def test_redis_restarted_empty_with_jobs_queued_all_run(stack, tmp_path: Path) -> None:
    with web(stack, tmp_path / "web.log") as client:
        dataset = upload(client, tmp_path, 12)
        ids = [job(client, dataset, epochs=1) for _ in range(3)]
        assert all(state(client, i)["status"] == "queued" for i in ids)
        stack["redis"].stop()  # the three messages are gone with it
        stack["redis"].start()
        time.sleep(1)
        with worker(stack, tmp_path / "worker.log"):
            for job_id in ids:
                done = finished(client, job_id, timeout=120)
                assert done["status"] == "succeeded", done["error"]
        log = (tmp_path / "worker.log").read_text()
        assert "re-sent queued jobs the broker had lost" in log


def test_web_server_restarted_mid_job_shows_progress_again(stack, tmp_path: Path) -> None:
    with worker(stack, tmp_path / "worker.log"):
        with web(stack, tmp_path / "web-1.log") as client:
            dataset = upload(client, tmp_path, 100)
            job_id = job(client, dataset, epochs=EPOCHS)
            wait_for(
                lambda: state(client, job_id)["progress"] > 0.1,
                timeout=120,
                what="the job to make progress",
            )
            progress_before = state(client, job_id)["progress"]
        # The web server is down now; the job trains on.
        with web(stack, tmp_path / "web-2.log") as client:
            again = state(client, job_id)
            assert again["status"] in ("running", "succeeded")
            assert again["progress"] >= progress_before
            page = client.get(f"/jobs/{job_id}").text
            assert "<progress" in page or again["status"] == "succeeded"
            fleet = client.get("/api/v1/workers").json()
            assert sorted(w["queues"] for w in fleet["workers"]) == [["cpu"], ["ingest"]]
            assert finished(client, job_id, timeout=180)["status"] == "succeeded"


def test_time_limit_stops_a_job_at_its_next_step(stack, tmp_path: Path) -> None:
    env = {**stack["env"], "TUNEBOARD_JOB_TIME_LIMIT_SECONDS": "3"}
    with web(stack, tmp_path / "web.log") as client:
        dataset = upload(client, tmp_path, 100)
        job_id = job(client, dataset, epochs=EPOCHS)
        with cli_process(["worker", "--queues", "cpu"], env, tmp_path / "worker.log"):
            done = finished(client, job_id, timeout=120)
    assert done["status"] == "failed" and done["error"].startswith("time limit"), done
    started, ended = (done[k] for k in ("started_at", "finished_at"))
    assert started and ended
    job_dir = Path(stack["folder"]) / "data" / "jobs" / str(job_id)
    assert not (job_dir / "checkpoint.pt").exists() and not (job_dir / "export.zip").exists()


def test_auto_jobs_go_to_the_gpu_queue_only_while_a_gpu_worker_is_alive(stack, tmp_path):
    with web(stack, tmp_path / "web.log") as client:
        dataset = upload(client, tmp_path, 12)
        body = {"dataset_id": dataset, "model": "local/tiny-bert", "strategy": "transfer_frozen"}
        cpu_job = client.post("/api/v1/jobs", json={**body, "device": "auto"}).json()
        assert cpu_job["queue"] == "cpu"  # no GPU worker has announced itself
        # A worker on the gpu queue (on this CPU-only machine it trains "auto" jobs on the
        # CPU, as a GPU worker whose GPU is busy elsewhere would not — routing is the point).
        with cli_process(["worker", "--queues", "gpu"], stack["env"], tmp_path / "gpu.log"):
            wait_for(
                lambda: any(
                    w["queues"] == ["gpu"] for w in client.get("/api/v1/workers").json()["workers"]
                ),
                timeout=60,
                what="the gpu worker's heartbeat",
            )
            routed = client.post("/api/v1/jobs", json={**body, "device": "auto"}).json()
            assert routed["queue"] == "gpu"
            assert finished(client, routed["id"], timeout=120)["status"] == "succeeded"
            fleet = client.get("/api/v1/workers").json()
            assert fleet["queue_depth"]["cpu"] >= 1  # the first job still waits for a cpu worker
            home = client.get("/").text
            assert "Workers" in home and "gpu" in home
        pinned = client.post("/api/v1/jobs", json={**body, "device": "gpu"}).json()
        assert pinned["queue"] == "gpu"  # waits for a GPU worker, whoever is alive
        for job_id in (cpu_job["id"], pinned["id"]):
            client.post(f"/api/v1/jobs/{job_id}/cancel")


def _postgres(action: str) -> None:
    """Stop or start the machine's PostgreSQL cluster (the one the stack's database is on)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        command += ["-m", "fast"]  # drops every connection, as a crash or restart does
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"


EPOCHS_THROUGH_OUTAGE = 24


def test_database_restarted_mid_job_loses_no_metric_rows(stack, tmp_path: Path) -> None:
    """RELIABILITY row 21, its database half: PostgreSQL goes away for several seconds while
    a job trains. The job's writes wait and retry; it finishes with every epoch's metrics."""
    with worker(stack, tmp_path / "worker.log"):
        with web(stack, tmp_path / "web.log") as client:
            dataset = upload(client, tmp_path, 100)
            # Long enough to outlive the outage on a quiet machine (8 epochs of 100 rows
            # once finished before the database was even stopped).
            job_id = job(client, dataset, epochs=EPOCHS_THROUGH_OUTAGE)
            wait_for(
                lambda: state(client, job_id)["progress"] > 0.1,
                timeout=120,
                what="the job to make progress",
            )
        _postgres("stop")
        try:
            time.sleep(6)  # several of the job's writes fall into the outage
        finally:
            _postgres("start")
        with web(stack, tmp_path / "web-2.log") as client:
            done = finished(client, job_id, timeout=240)
            assert done["status"] == "succeeded", done
            series = client.get(f"/api/v1/jobs/{job_id}/metrics").json()["series"]
    epochs = series["val_accuracy"]["epoch"]
    expected = [float(e) for e in range(1, EPOCHS_THROUGH_OUTAGE + 1)]
    assert epochs == expected, epochs  # none lost, none twice
    steps = series["train_loss"]["step"]
    assert steps == sorted(set(steps)), "train-loss rows lost their order or repeat"
    gaps = {b - a for a, b in zip(steps, steps[1:], strict=False)}
    assert max(gaps) <= 2 * min(gaps) + 1, f"a run of train-loss rows is missing: {steps}"
    log = (tmp_path / "worker.log").read_text()
    assert "database unavailable while writing" in log  # the outage was met, and waited out
