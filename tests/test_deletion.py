"""Deleting datasets, jobs, comparisons and predictions (app/deletion.py): through the API and
the confirmation pages, with a real worker training real (tiny) jobs, real files on disk and
the real database. What goes, what stays, who may, and a running job stopped first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings, get_settings
from app.datasets.models import Dataset
from app.db import get_sessionmaker
from app.jobs.models import JobLog, MetricPoint
from tests.accounts import csrf_of, ensure_user, sign_in
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import run_job
from tests.processes import wait_for


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real `tuneboard worker --queues ingest`: uploads are checked off the request path."""
    from tests.processes import worker_process

    log = tmp_path_factory.mktemp("ingest") / "ingest.log"
    with worker_process(log, queues="ingest"):
        yield log


def _upload(client: TestClient, path: Path, name: str) -> dict[str, Any]:
    files = {"file": (path.name, path.read_bytes())}
    response = client.post("/api/v1/datasets?wait=30", files=files, data={"name": name})
    assert response.status_code in (201, 202), response.text
    url = f"/api/v1/datasets/{response.json()['id']}"
    ready = wait_for(
        lambda: (d := client.get(url).json())["status"] != "checking" and d,
        timeout=90,
        what=f"{url} to be checked",
    )
    assert ready["status"] == "ready", ready
    return dict(ready)


def _content_hash(dataset_id: int) -> str:
    with get_sessionmaker()() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        return dataset.content_hash


def _rows(table: Any, job_id: int) -> int:
    with get_sessionmaker()() as session:
        return int(session.scalar(select(func.count()).where(table.job_id == job_id)) or 0)


def test_a_dataset_goes_with_its_jobs_files_predictions_and_unused_features(
    client: TestClient,
    bob_client: TestClient,
    worker: Path,
    checker: Path,
    tiny_model_id: str,
    tmp_path: Path,
) -> None:
    settings = get_settings()
    csv = write_csv(tmp_path / "topics.csv", labelled_texts(10, seed=7))
    first = _upload(client, csv, "first copy")
    twin = _upload(client, csv, "same files")  # same content: shares cached features
    body = {"dataset_id": first["id"], "model": tiny_model_id, "strategy": "transfer_frozen"}
    job = run_job(client, {**body, "params": {"epochs": 1}})
    assert job["status"] == "succeeded", job
    asked = client.post(f"/api/v1/jobs/{job['id']}/predict?wait=0", data={"text": "a question"})
    assert asked.status_code in (200, 202), asked.text
    prediction_id = asked.json()["id"]

    cache = settings.feature_cache_dir / _content_hash(first["id"])
    job_folder = settings.jobs_dir / str(job["id"])
    folders = {
        "dataset": settings.datasets_dir / str(first["id"]),
        "job": job_folder,
        "prediction": settings.data_dir / "predictions" / str(prediction_id),
    }
    assert all(f.is_dir() for f in folders.values()), folders
    assert (job_folder / "export.zip").is_file()
    assert list(cache.glob("*.safetensors")), "the worker caches features per content hash"
    assert _rows(MetricPoint, job["id"]) and _rows(JobLog, job["id"])

    page = client.get(f"/datasets/{first['id']}/delete")
    assert page.status_code == 200
    assert "Deletes this dataset" in page.text and "its 1 job with their" in page.text
    assert "1 playground prediction" in page.text
    assert f'action="/datasets/{first["id"]}/delete"' in page.text
    assert f'action="/datasets/{first["id"]}/delete"' in client.get(f"/datasets/{first['id']}").text

    # Another user learns nothing and deletes nothing.
    for url in (
        f"/api/v1/datasets/{first['id']}",
        f"/api/v1/jobs/{job['id']}",
        f"/api/v1/predictions/{prediction_id}",
    ):
        assert bob_client.delete(url).status_code == 404, url
    assert bob_client.get(f"/datasets/{first['id']}/delete").status_code == 404
    assert bob_client.post(f"/datasets/{first['id']}/delete").status_code == 404

    assert client.delete(f"/api/v1/datasets/{first['id']}").status_code == 204
    for url in (
        f"/api/v1/datasets/{first['id']}",
        f"/api/v1/jobs/{job['id']}",
        f"/api/v1/predictions/{prediction_id}",
    ):
        assert client.get(url).status_code == 404, url
    assert not [name for name, f in folders.items() if f.exists()]
    assert _rows(MetricPoint, job["id"]) == 0 and _rows(JobLog, job["id"]) == 0
    assert cache.is_dir(), "the twin dataset still uses the cached features"

    # The page's form: the confirmation's POST, then the list; the last user of the
    # features gone, they go too.
    token = csrf_of(client, f"/datasets/{twin['id']}/delete")
    done = client.post(
        f"/datasets/{twin['id']}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/datasets"
    assert client.get(f"/api/v1/datasets/{twin['id']}").status_code == 404
    assert not cache.exists()
    assert not (settings.datasets_dir / str(twin["id"])).exists()


def test_a_running_job_is_stopped_before_it_is_deleted(
    client: TestClient,
    bob_client: TestClient,
    admin_client: TestClient,
    worker: Path,
    checker: Path,
    tiny_model_id: str,
    tmp_path: Path,
) -> None:
    settings = get_settings()
    dataset = _upload(client, write_csv(tmp_path / "d.csv", labelled_texts(10, seed=8)), "d")
    body = {"dataset_id": dataset["id"], "model": tiny_model_id, "strategy": "finetune_full"}
    created = client.post("/api/v1/jobs", json={**body, "params": {"epochs": 200}})
    assert created.status_code == 201, created.text
    url = f"/api/v1/jobs/{created.json()['id']}"
    wait_for(lambda: client.get(url).json()["status"] == "running", timeout=60, what="running")

    refused = client.delete(url)
    assert refused.status_code == 409, refused.text
    assert "asked to stop" in refused.json()["detail"]
    assert client.get(url).json()["cancel_requested"] is True
    wait_for(lambda: client.get(url).json()["status"] == "cancelled", timeout=60, what="stop")
    job_id = created.json()["id"]
    token = csrf_of(client, f"/jobs/{job_id}/delete")
    done = client.post(f"/jobs/{job_id}/delete", data={"csrf_token": token})
    assert done.url.path == "/jobs" and client.get(url).status_code == 404
    assert not (settings.jobs_dir / str(job_id)).exists()

    # A comparison goes with its jobs (queued ones cancelled at once; one the worker took
    # already is stopped first); its dataset stays.
    strategies = ["transfer_frozen", "finetune_full"]
    compared = client.post(
        "/api/v1/comparisons",
        json={"dataset_id": dataset["id"], "model": tiny_model_id, "strategies": strategies},
    )
    assert compared.status_code == 201, compared.text
    comparison = f"/api/v1/comparisons/{compared.json()['id']}"
    job_ids = compared.json()["job_ids"]
    assert bob_client.delete(comparison).status_code == 404
    wait_for(lambda: client.delete(comparison).status_code == 204, timeout=60, what="deleted")
    assert client.get(comparison).status_code == 404
    assert all(client.get(f"/api/v1/jobs/{i}").status_code == 404 for i in job_ids)
    assert client.get(f"/api/v1/datasets/{dataset['id']}").status_code == 200

    # An admin may delete anyone's.
    assert admin_client.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 204


def test_deleting_needs_the_csrf_token_of_a_session(client: TestClient, tmp_path: Path) -> None:
    from app.main import app

    dataset = _upload_unchecked(client, tmp_path)
    with TestClient(app) as browser:
        sign_in(browser, "alice")
        browser.headers.pop("X-CSRF-Token")
        assert browser.delete(f"/api/v1/datasets/{dataset}").status_code == 403
        assert browser.post(f"/datasets/{dataset}/delete").status_code == 403
        foreign = {"Origin": "https://evil.example", "X-CSRF-Token": csrf_of(browser, "/")}
        assert browser.delete(f"/api/v1/datasets/{dataset}", headers=foreign).status_code == 403
        assert browser.get(f"/api/v1/datasets/{dataset}").status_code == 200
    assert client.delete(f"/api/v1/datasets/{dataset}").status_code == 204


def _upload_unchecked(client: TestClient, tmp_path: Path, n: int = 5) -> int:
    """A stored upload, whether or not its check has run (enough for quotas and CSRF)."""
    path = write_csv(tmp_path / f"q{n}.csv", labelled_texts(n, seed=n))
    response = client.post("/api/v1/datasets", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (201, 202), response.text
    return int(response.json()["id"])


def test_deleting_a_dataset_frees_the_storage_quota(tmp_path: Path) -> None:
    from app.main import app

    ensure_user("carol")
    size = write_csv(tmp_path / "q5.csv", labelled_texts(5, seed=5)).stat().st_size
    app.dependency_overrides[get_settings] = lambda: Settings(
        max_storage_bytes_per_user=int(size * 1.5)
    )
    try:
        with TestClient(app) as carol:
            sign_in(carol, "carol")
            first = _upload_unchecked(carol, tmp_path)
            over = carol.post("/api/v1/datasets", files={"file": ("b.csv", b"x" * size)})
            assert over.status_code == 429 and "storage quota" in over.json()["detail"]
            assert "delete datasets you no longer need" in over.json()["detail"]
            assert carol.delete(f"/api/v1/datasets/{first}").status_code == 204
            _upload_unchecked(carol, tmp_path)  # room again
    finally:
        app.dependency_overrides.pop(get_settings, None)
