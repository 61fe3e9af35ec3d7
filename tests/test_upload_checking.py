"""Uploads are stored by the web server and checked by the ingest worker (RELIABILITY row 29):
a big file answers at once without growing the web process, the page follows the check, a
file past the row cap is refused with the reason, and a refused file leaves nothing stored.
The ingest worker is a real process (the `ingester` fixture); the web runs in this process,
so its memory is read from /proc/self/status."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import get_settings
from app.datasets import checking
from app.datasets.models import Dataset, DatasetStatus
from app.db import get_sessionmaker
from tests.jobs_api import wait_checked

MIB = 1024 * 1024


def _rss() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def _short_rows(n: int) -> bytes:
    """A CSV of `n` tiny rows (two classes), about 8 bytes a row."""
    return b"text,label\n" + b"".join(b"%x,%s\n" % (i, b"ab"[i % 2 : i % 2 + 1]) for i in range(n))


def _post_measured(client: TestClient, body: bytes) -> tuple[object, float, int]:
    """POST the file; (response, seconds, the web process's peak RSS growth meanwhile)."""
    before, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    response = client.post("/api/v1/datasets", files={"file": ("big.csv", body)})
    took = time.perf_counter() - started
    done.set()
    sampler.join()
    return response, took, max(peak[0], _rss()) - before


def test_a_big_csv_answers_at_once_and_the_worker_checks_it(client: TestClient) -> None:
    body = _short_rows(200_000)
    assert len(body) < get_settings().max_upload_bytes
    client.get("/datasets")  # the page machinery is warm: only the upload is measured
    response, took, growth = _post_measured(client, body)
    assert response.status_code == 202, response.text  # type: ignore[attr-defined]
    dataset = response.json()  # type: ignore[attr-defined]
    assert dataset["status"] == "checking" and dataset["num_rows"] == 0
    assert response.headers["location"] == f"/api/v1/datasets/{dataset['id']}"  # type: ignore[attr-defined]
    assert took < 1.0, f"the upload request took {took:.2f} s"
    assert growth < 40 * MIB, f"the web process grew by {growth / MIB:.0f} MiB"

    # While it is checked: the page says so and polls; jobs are refused with the reason.
    page = client.get(f"/datasets/{dataset['id']}").text
    assert "Checking…" in page and f'hx-get="/datasets/{dataset["id"]}/state"' in page
    assert "Train a model on this dataset" not in page
    job = {"dataset_id": dataset["id"], "model": "minilm-l6", "strategy": "transfer_frozen"}
    refused = client.post("/api/v1/jobs", json=job)
    assert refused.status_code == 422 and "still being checked" in refused.json()["detail"]
    assert f'value="{dataset["id"]}"' not in client.get("/jobs/new").text

    checked = wait_checked(client, dataset["id"], timeout=120)
    assert checked["status"] == "ready", checked["error"]
    assert checked["num_rows"] == checked["rows_read"] == 200_000
    assert checked["label_names"] == ["a", "b"] and checked["progress"] == 1.0
    # The fragment the page polls comes back without its trigger, holding the report.
    state = client.get(f"/datasets/{dataset['id']}/state").text
    assert "hx-trigger" not in state and "Validation report" in state and "200000" in state


def test_a_file_past_the_row_cap_is_refused_naming_the_line(
    client: TestClient, data_root: Path
) -> None:
    cap = get_settings().max_dataset_rows  # the ingest worker has the same environment
    response = client.post("/api/v1/datasets", files={"file": ("many.csv", _short_rows(cap + 1))})
    assert response.status_code == 202, response.text
    checked = wait_checked(client, response.json()["id"], timeout=120)
    assert checked["status"] == "invalid"
    assert f"more than {cap:,} rows" in checked["error"]["detail"]
    assert checked["error"]["line"] == cap + 2  # the header is line 1
    assert not (data_root / "data" / "datasets" / str(checked["id"])).exists()


def test_a_refused_file_leaves_nothing_but_its_reason(client: TestClient, data_root: Path) -> None:
    ragged = b"text,label\nfine,a\nbad,b,extra\nok,b\n"
    response = client.post("/api/v1/datasets", files={"file": ("ragged.csv", ragged)})
    assert response.status_code == 202, response.text
    dataset_id = response.json()["id"]
    checked = wait_checked(client, dataset_id)
    assert checked["status"] == "invalid" and checked["error"]["line"] == 3
    assert "3 fields" in checked["error"]["detail"]
    assert not (data_root / "data" / "datasets" / str(dataset_id)).exists()
    assert not list((data_root / "data" / "uploads").glob("*"))
    page = client.get(f"/datasets/{dataset_id}").text
    assert "This file cannot be used" in page and "Upload a fixed file" in page
    assert "line 3" in page and "hx-trigger" not in page
    listing = client.get("/datasets").text
    assert "refused" in listing
    job = {"dataset_id": dataset_id, "model": "minilm-l6", "strategy": "transfer_frozen"}
    refused = client.post("/api/v1/jobs", json=job)
    assert refused.status_code == 422 and f"dataset {dataset_id} is invalid" in refused.text
    # With `wait`, the same file is answered 422 with the reason, and no row is left.
    before = len(client.get("/api/v1/datasets").json())
    waited = client.post(
        "/api/v1/datasets", files={"file": ("ragged.csv", ragged)}, params={"wait": 60}
    )
    assert waited.status_code == 422 and waited.json()["line"] == 3
    assert len(client.get("/api/v1/datasets").json()) == before


def test_a_check_that_killed_its_worker_twice_is_refused(client: TestClient) -> None:
    """A message delivered again after its process died counts an attempt; past the cap the
    file is refused rather than kill workers for ever. Run here as the worker runs it."""
    response = client.post(
        "/api/v1/datasets", files={"file": ("x.csv", _short_rows(10))}, params={"wait": 60}
    )
    settings = get_settings()
    with get_sessionmaker()() as session:
        dataset = session.get(Dataset, response.json()["id"])
        assert dataset is not None
        # As if two deliveries had died mid-check (their folder is as the upload left it).
        dataset.status, dataset.check_attempts = DatasetStatus.checking, 2
        session.commit()
        checked = checking.check_dataset(session, settings=settings, dataset_id=dataset.id)
        assert checked is not None and checked.status == DatasetStatus.invalid
        assert "stopped its worker twice" in (checked.error or {})["detail"]
        # A later delivery of the same message finds it checked and does nothing.
        assert checking.check_dataset(session, settings=settings, dataset_id=dataset.id) is None
    assert not (settings.datasets_dir / str(checked.id)).exists()
