"""The whole path with a real Celery worker process on the embedded SQLite broker:
upload → job → claimed → trained → metrics → export that loads with transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.queue import enqueue_training
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import FINISHED, load_export, run_job, upload_csv
from tests.processes import wait_for


@pytest.fixture(scope="module")
def dataset_id(client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> int:
    path = write_csv(tmp_path_factory.mktemp("data") / "d.csv", labelled_texts(40))
    return upload_csv(client, path)["id"]


@pytest.mark.parametrize("strategy", ["transfer_frozen", "finetune_full"])
def test_job_trains_in_the_worker_and_exports(
    client: TestClient,
    worker: Path,
    dataset_id: int,
    tiny_model_id: str,
    strategy: str,
    tmp_path: Path,
) -> None:
    import torch

    # Frozen features fit their head to convergence: no epochs or rate to give them.
    params = {} if strategy == "transfer_frozen" else {"epochs": 4, "learning_rate": 1e-3}
    params["batch_size"] = 8
    job = run_job(
        client,
        {"dataset_id": dataset_id, "model": tiny_model_id, "strategy": strategy, "params": params},
    )
    assert job["status"] == "succeeded", (job["error"], worker.read_text()[-3000:])
    results = job["results"]
    assert results["test_accuracy"] >= 0.8
    assert results["train_examples_per_second"] > 0
    assert results["trainable_params"] <= results["total_params"]
    assert job["attempts"] == 1 and job["progress"] == 1.0

    series = client.get(f"/api/v1/jobs/{job['id']}/metrics").json()["series"]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1"} <= set(series)
    # One point per epoch, or per L2 strength the frozen head's fit tried.
    assert len(series["val_accuracy"]["value"]) == results["epochs_run"]
    assert ("head_l2" in series) == (strategy == "transfer_frozen")

    model, tokenizer = load_export(client, job["id"], tmp_path)
    assert set(model.config.id2label.values()) == {"sport", "money", "music"}
    texts = [
        "goal match team score league",
        "bank price market profit stock",
        "song band album guitar concert",
    ]
    with torch.no_grad():
        logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
    predicted = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert predicted == ["sport", "money", "music"]

    page = client.get(f"/jobs/{job['id']}")
    assert page.status_code == 200
    for fragment in ("status", "outcome"):  # polling stops once the job has finished
        assert "hx-trigger" not in client.get(f"/jobs/{job['id']}/{fragment}").text
    assert "Download tuned model" in page.text


def test_redelivered_message_never_runs_a_job_twice(
    client: TestClient, worker: Path, dataset_id: int, tiny_model_id: str
) -> None:
    job = run_job(
        client,
        {
            "dataset_id": dataset_id,
            "model": tiny_model_id,
            "strategy": "transfer_frozen",
            "params": {"epochs": 2},
        },
    )
    assert job["status"] == "succeeded"
    enqueue_training(job["id"])  # the same id again, as a redelivery would
    enqueue_training(job["id"])
    wait_for(lambda: "is not queued" in worker.read_text(), timeout=60, what="the skip")
    again = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert again["attempts"] == 1 and again["status"] == "succeeded"


def test_cancel_stops_a_running_job(
    client: TestClient, worker: Path, dataset_id: int, tiny_model_id: str
) -> None:
    created = client.post(
        "/api/v1/jobs",
        json={
            "dataset_id": dataset_id,
            "model": tiny_model_id,
            "strategy": "finetune_full",
            "params": {"epochs": 200, "batch_size": 2},
        },
    ).json()
    url = f"/api/v1/jobs/{created['id']}"
    wait_for(lambda: client.get(url).json()["step"] > 3, timeout=120, what="training steps")
    assert client.post(url + "/cancel").status_code == 200
    job = wait_for(
        lambda: (j := client.get(url).json())["status"] in FINISHED and j,
        timeout=30,
        what="the cancel",
    )
    assert job["status"] == "cancelled"
    assert client.get(url + "/export").status_code == 404
