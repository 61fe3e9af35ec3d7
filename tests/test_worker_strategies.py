"""Every strategy through the real worker: a comparison of all five on one split, then Auto
choosing for a small dataset. Each export loads with plain transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import labelled_texts, write_csv
from tests.jobs_api import load_export, run_job, upload_csv
from tests.processes import wait_for


@pytest.fixture(scope="module")
def dataset_id(client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> int:
    path = write_csv(tmp_path_factory.mktemp("cmp") / "cmp.csv", labelled_texts(40, seed=5))
    return upload_csv(client, path)["id"]


def test_comparison_of_all_strategies_completes(
    client: TestClient, worker: Path, dataset_id: int, tiny_model_id: str, tmp_path: Path
) -> None:
    response = client.post(
        "/api/v1/comparisons",
        json={
            "dataset_id": dataset_id,
            "model": tiny_model_id,
            "params": {"epochs": 3, "batch_size": 8, "max_length": 48},
        },
    )
    assert response.status_code == 201, response.text
    url = f"/api/v1/comparisons/{response.json()['id']}"
    verdict = wait_for(
        lambda: (v := client.get(url).json())["finished"] and v, timeout=300, what="the comparison"
    )
    statuses = {row["job"]["strategy"]: row["job"]["status"] for row in verdict["rows"]}
    assert set(statuses.values()) == {"succeeded"}, (statuses, worker.read_text()[-3000:])
    assert verdict["winner_job_id"] in verdict["job_ids"]
    assert verdict["cheapest_job_id"] in verdict["job_ids"] and verdict["summary"]
    for row in verdict["rows"]:
        results = row["job"]["results"]
        assert {
            "trainable_params",
            "total_params",
            "wall_seconds",
            "train_examples_per_second",
            "peak_memory_bytes",
            "val_macro_f1",
            "test_accuracy",
        } <= set(results)
        model, _ = load_export(client, row["job"]["id"], tmp_path / str(row["job"]["id"]))
        assert model.config.num_labels == 3
    trainable = {row["job"]["strategy"]: row["trainable_params"] for row in verdict["rows"]}
    assert trainable["transfer_frozen"] < trainable["finetune_lora"] < trainable["finetune_full"]
    assert trainable["transfer_top_k"] < trainable["finetune_full"] == trainable["lp_ft"]

    page = client.get(f"/comparisons/{response.json()['id']}")
    assert "cheapest within one point" in page.text and 'id="overlay"' in page.text


def test_auto_picks_and_says_why(
    client: TestClient, worker: Path, dataset_id: int, tiny_model_id: str
) -> None:
    job = run_job(
        client,
        {
            "dataset_id": dataset_id,
            "model": tiny_model_id,
            "strategy": "auto",
            "params": {"max_length": 48},
        },
    )
    assert job["status"] == "succeeded", job["error"]
    # 96 training rows is below the small-data threshold: frozen features, and the reason.
    assert job["resolved_strategy"] == "transfer_frozen"
    assert "96 training examples" in job["strategy_reason"]
    assert job["params"]["epochs"] is None  # resolved in the worker, not stored as a guess
    page = client.get(f"/jobs/{job['id']}").text
    assert "Auto picked Transfer learning — frozen features" in page
