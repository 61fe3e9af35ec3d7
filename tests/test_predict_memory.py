"""RELIABILITY.md row 28: a small ZIP of huge images sent to batch prediction.

Three 6300×6300 PNGs compress to about 140 KB each but decode to 119 MB each. The predict
worker is long-lived (it keeps models loaded), so whatever it allocates for a batch it may keep
for good. Here a real stack of our own (web, training worker, predict workers, all on a
throwaway SQLite home, so no other test's predict worker takes our messages) trains a tiny
image model, and the predict worker's memory is read from /proc around such a batch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from app import queue as lanes
from tests.accounts import PASSWORD, sign_in
from tests.image_factories import colour_image, colour_zip, make_image_zip
from tests.processes import ROOT, cli_process, embedded_env, free_port, wait_for

MB = 1024 * 1024
HUGE = (6300, 6300)  # 39.7 million pixels: under the dataset cap, over the prediction cap
# What the batch below may add to the predict worker's peak memory. Before the change it
# added about 1.4 GB (three full decodes held at once, then kept by the allocator).
PEAK_GROWTH_BOUND = 300 * MB


def huge_image(fmt: str, size: tuple[int, int], shade: int) -> bytes:
    """A valid, mostly flat picture: tiny on disk, enormous once decoded."""
    image = Image.new("RGB", size, (90, 140, shade))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((w // 6, h // 6, w // 2, h * 2 // 3), fill=(200, 40, 40))
    draw.ellipse((w * 5 // 9, h // 12, w * 19 // 20, h // 2), fill=(40, 200, 40))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return buffer.getvalue()


# --- the predict worker's memory, from /proc ---------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak resident) and Pss (resident, pages shared with the pool's parent
    counted once) in bytes; empty for a process that has gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        lines += Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    keys = ("VmRSS", "VmHWM", "Pss")
    return {k: int(fields[k].split()[0]) * 1024 for k in keys if k in fields}


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a prefork worker's pool processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def memory(pids: list[int]) -> dict[str, int]:
    """Resident and peak bytes of the predict workers' process trees, summed."""
    total = {"VmRSS": 0, "VmHWM": 0, "Pss": 0}
    for root in pids:
        for pid in _tree(root):
            for key, value in _status(pid).items():
                total[key] += value
    return total


def _mb(figures: dict[str, int]) -> str:
    return ", ".join(f"{key} {value / MB:.0f}" for key, value in figures.items())


# --- our own stack ----------------------------------------------------------------------------


def predict_lanes() -> list[str]:
    """The predict queue batch files go to (a lane of their own, where there is one)."""
    return [getattr(lanes, "PREDICT_BATCH_QUEUE", lanes.PREDICT_QUEUE)]


@contextmanager
def predict_workers(home: Path, env: dict[str, str], name: str) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        procs, logs = [], []
        for lane in predict_lanes():
            log = home / f"{name}-{lane}.log"
            procs.append(stack.enter_context(cli_process(["worker", f"--queues={lane}"], env, log)))
            logs.append(log)

        def ready() -> bool:
            for proc, log in zip(procs, logs, strict=True):
                assert proc.poll() is None, log.read_text()[-3000:]
            return all(b"ready" in log.read_bytes() for log in logs)

        wait_for(
            ready,
            timeout=120,
            what="the predict workers to start",
        )
        yield {"pids": [p.pid for p in procs], "logs": logs}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_vit_id: str, data_root: Path
) -> Iterator[dict[str, Any]]:
    """Web server and a trained tiny image job on a home of their own."""
    home = tmp_path_factory.mktemp("predict-memory")
    port = free_port()
    env = {
        **embedded_env(home, port),
        "TUNEBOARD_MODEL_ROOTS": json.dumps([str(data_root / "models")]),  # tiny_vit_id's
        "TUNEBOARD_TORCH_THREADS": "1",
        "TUNEBOARD_WORKER_BEAT_SECONDS": "1",
    }
    subprocess.run(
        [sys.executable, "-m", "app.cli", "create-user", "ops", "--password-stdin"],
        input=PASSWORD + "\n",
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    args = ["serve", "--no-worker", "--port", str(port)]
    log = home / "workers.log"
    with (
        cli_process(args, env, home / "web.log") as web,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        wait_for(lambda: _up(client, web, home / "web.log"), timeout=90, what="the web server")
        sign_in(client, "ops")  # type: ignore[arg-type]  # httpx.Client is enough for it
        with ExitStack() as helpers:
            procs = [  # uploads may be checked by a worker of their own
                helpers.enter_context(cli_process(["worker", f"--queues={lane}"], env, log))
                for lane in ("cpu", getattr(lanes, "INGEST_QUEUE", None))
                if lane
            ]
            job = _trained_job(client, home, tiny_vit_id, lambda: _alive(procs, log))
        yield {"client": client, "env": env, "home": home, "job": job}


def _up(client: httpx.Client, web: subprocess.Popen[bytes], log: Path) -> bool:
    assert web.poll() is None, log.read_text()[-3000:]
    try:
        return client.get("/login").status_code == 200
    except httpx.HTTPError:
        return False


def _alive(procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    assert all(p.poll() is None for p in procs), log.read_text()[-3000:]


def _trained_job(
    client: httpx.Client, home: Path, model: str, check: Callable[[], None]
) -> dict[str, Any]:
    archive = colour_zip(home / "colours.zip", 6)
    response = client.post(
        "/api/v1/datasets", files={"file": ("colours.zip", archive.read_bytes())}
    )
    assert response.status_code in (201, 202), response.text
    url = f"/api/v1/datasets/{response.json()['id']}"
    dataset = wait_for(
        lambda: check() or (d := client.get(url).json()).get("status", "ready") != "checking" and d,
        timeout=120,
        what="the upload's check",
    )
    assert dataset.get("status", "ready") == "ready", dataset
    body = {
        "dataset_id": dataset["id"],
        "model": model,
        "strategy": "finetune_full",
        "device": "cpu",
        "params": {"epochs": 1, "learning_rate": 3e-3, "batch_size": 8},
    }
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    url = f"/api/v1/jobs/{response.json()['id']}"
    job = wait_for(
        lambda: check() or (j := client.get(url).json())["status"] in {"succeeded", "failed"} and j,
        timeout=240,
        what="the image job",
    )
    assert job["status"] == "succeeded", (job, (home / "workers.log").read_text()[-3000:])
    return job


def batch(client: httpx.Client, job_id: int, archive: Path) -> dict[str, dict[str, str]]:
    """Send a ZIP to batch prediction; its CSV rows by file name."""
    response = client.post(
        f"/api/v1/jobs/{job_id}/predict-batch",
        files={"file": (archive.name, archive.read_bytes())},
    )
    assert response.status_code in (200, 201, 202), response.text
    url = f"/api/v1/predictions/{response.json()['id']}"
    done = wait_for(
        lambda: (p := client.get(url).json())["status"] != "queued" and p,
        timeout=120,
        interval=0.2,
        what="the batch prediction",
    )
    assert done["status"] == "succeeded", done
    rows = csv.DictReader(io.StringIO(client.get(url + "/download").text))
    return {row["file"]: row for row in rows}


def small_zip(path: Path) -> Path:
    return make_image_zip(path, {f"small/{c}.png": colour_image(c, 900) for c in ("red", "blue")})


# --- the tests --------------------------------------------------------------------------------


def test_a_zip_of_huge_images_leaves_the_predict_worker_bounded(stack: dict[str, Any]) -> None:
    client, home, job_id = stack["client"], stack["home"], stack["job"]["id"]
    members = {f"huge/{i}.png": huge_image("PNG", HUGE, 200 + i) for i in range(3)}
    members["huge/photo.jpg"] = huge_image("JPEG", HUGE, 120)  # decoded at 1/8 scale
    members["big/scan.png"] = huge_image("PNG", (3000, 3000), 160)  # under the cap: predicted
    members["small/red.png"] = colour_image("red", 901)
    archive = make_image_zip(home / "huge.zip", members)
    assert archive.stat().st_size < 2 * MB  # a small upload
    with predict_workers(home, stack["env"], "bounded") as workers:
        batch(client, job_id, small_zip(home / "warm.zip"))  # the model is loaded
        before = memory(workers["pids"])
        rows = batch(client, job_id, archive)
        after = memory(workers["pids"])
        loads = "".join(log.read_text() for log in workers["logs"]).count("loading the model")
    growth = after["VmHWM"] - before["VmRSS"]
    print(f"predict workers, MB: before {_mb(before)}; after {_mb(after)}")
    assert loads == 1  # the pool process kept the model between the two batches
    for i in range(3):
        row = rows[f"huge/{i}.png"]
        assert not row["predicted"] and "6300×6300" in row["error"], row
        assert "limit" in row["error"] and "scale it down" in row["error"], row
    for name in ("huge/photo.jpg", "big/scan.png", "small/red.png"):
        assert rows[name]["predicted"] in {"red", "green", "blue"} and not rows[name]["error"]
    assert growth < PEAK_GROWTH_BOUND, f"peak grew by {growth / MB:.0f} MB"


def test_a_worker_over_its_memory_ceiling_recycles_and_answers_again(
    stack: dict[str, Any],
) -> None:
    """With a ceiling below what a loaded model needs, every batch ends in a recycle; the
    next batch is still answered (by a fresh pool process, which loads the model again)."""
    client, home, job_id = stack["client"], stack["home"], stack["job"]["id"]
    env = {**stack["env"], "TUNEBOARD_PREDICT_WORKER_MAX_RSS_MB": "64"}
    with predict_workers(home, env, "recycle") as workers:
        pool = {pid for root in workers["pids"] for pid in _tree(root)[1:]}
        first = batch(client, job_id, small_zip(home / "first.zip"))
        second = batch(client, job_id, small_zip(home / "second.zip"))
        text = "\n".join(log.read_text() for log in workers["logs"])
        alive = [pid for pid in workers["pids"] if os.path.exists(f"/proc/{pid}")]
        pool_after = {pid for root in alive for pid in _tree(root)[1:]}
    assert first.keys() == second.keys() and second["small/red.png"]["predicted"]
    assert text.count("loading the model of job") == 2, text[-3000:]  # once per pool process
    assert alive == workers["pids"]  # the workers themselves stayed up ...
    assert pool_after and len(pool_after - pool) >= 1  # ... with the batch's pool replaced
