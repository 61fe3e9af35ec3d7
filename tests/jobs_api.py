"""Driving jobs through the JSON API in tests: run one to the end, unpack its export."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.processes import wait_for

FINISHED = {"succeeded", "failed", "cancelled"}
# Uploads are checked by the ingest worker (the `ingester` fixture); with this the upload
# answers once the check has ended: 201 with the dataset, or 422 with the reason.
CHECKED = {"wait": 60}


def upload_csv(client: TestClient, path: Path, **form: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/datasets",
        files={"file": (path.name, path.read_bytes())},
        data=form,
        params=CHECKED,
    )
    assert response.status_code == 201, response.text
    return response.json()


def wait_checked(client: TestClient, dataset_id: int, *, timeout: float = 60) -> dict[str, Any]:
    """The dataset once the ingest worker has checked it (`ready` or `invalid`)."""
    url = f"/api/v1/datasets/{dataset_id}"
    return wait_for(
        lambda: (d := client.get(url).json())["status"] != "checking" and d,
        timeout=timeout,
        interval=0.2,
        what=f"{url} to be checked",
    )


def run_job(client: TestClient, body: dict[str, Any], *, timeout: float = 180) -> dict[str, Any]:
    """Create a job and wait until the worker has finished it; returns the final job."""
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    url = f"/api/v1/jobs/{response.json()['id']}"
    return wait_for(
        lambda: (j := client.get(url).json())["status"] in FINISHED and j,
        timeout=timeout,
        what=f"{url} to finish",
    )


def export_folder(client: TestClient, job_id: int, into: Path) -> Path:
    """Download the job's ZIP, check its layout; returns its model folder."""
    response = client.get(f"/api/v1/jobs/{job_id}/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = set(archive.namelist())
        archive.extractall(into)
    assert {"README.md", "metrics.json", "model/config.json", "model/model.safetensors"} <= names
    return into / "model"


def load_export(client: TestClient, job_id: int, into: Path) -> tuple[Any, Any]:
    """The job's export loaded with plain transformers (text models without a declared
    pooling: AutoModelForSequenceClassification and its tokenizer)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = export_folder(client, job_id, into)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    return model.eval(), AutoTokenizer.from_pretrained(folder)
