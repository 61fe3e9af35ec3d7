"""Creating jobs through the API: validation of the request, before any worker is involved."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import labelled_texts, write_csv
from tests.jobs_api import CHECKED


def _dataset_id(client: TestClient, tmp_path: Path) -> int:
    path = write_csv(tmp_path / "d.csv", labelled_texts(10))
    files = {"file": ("d.csv", path.read_bytes())}
    response = client.post("/api/v1/datasets", files=files, params=CHECKED)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_models_lists_the_packaged_minilm(client: TestClient, tiny_model_id: str) -> None:
    models = {m["id"]: m for m in client.get("/api/v1/models").json()}
    assert models["minilm-l6"]["source"] == "packaged"
    assert models["minilm-l6"]["parameters"] > 20_000_000
    assert models[tiny_model_id]["source"] == "local"


def test_job_request_errors_are_422_with_reasons(
    client: TestClient, tmp_path: Path, tiny_model_id: str
) -> None:
    dataset_id = _dataset_id(client, tmp_path)
    base = {"dataset_id": dataset_id, "model": tiny_model_id, "strategy": "transfer_frozen"}
    cases = [
        ({**base, "params": {"epochz": 3}}, "epochz"),
        ({**base, "params": {"epochs": 0}}, "epochs"),
        ({**base, "strategy": "magic"}, "strategy"),
        ({**base, "model": "https://example.com/model.bin"}, "unknown model"),
        ({**base, "dataset_id": 987654}, "no dataset"),
        ({**base, "colour": "red"}, "colour"),
    ]
    for body, expected in cases:
        response = client.post("/api/v1/jobs", json=body)
        assert response.status_code == 422, (body, response.text)
        assert expected in response.text, (body, response.text)


def test_created_job_is_queued_with_resolved_defaults(
    client: TestClient, tmp_path: Path, tiny_model_id: str
) -> None:
    dataset_id = _dataset_id(client, tmp_path)
    response = client.post(
        "/api/v1/jobs",
        json={
            "dataset_id": dataset_id,
            "model": tiny_model_id,
            "strategy": "finetune_full",
            "params": {"batch_size": 8},
        },
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["params"]["epochs"] == 3 and job["params"]["batch_size"] == 8
    # Cancelling a queued job is immediate; a second cancel is a conflict.
    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 409
    assert client.get(f"/api/v1/jobs/{job['id']}/export").status_code == 404
