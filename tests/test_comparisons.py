"""Comparisons: request validation, one job per strategy with the same seed, and the verdict."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.comparisons.models import Comparison
from app.comparisons.service import judge
from app.datasets.models import Dataset
from app.db import get_sessionmaker
from app.jobs.models import Job, JobStatus
from app.jobs.strategies import Strategy
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import upload_csv


def test_comparison_request_is_validated(
    client: TestClient, tmp_path: Path, tiny_model_id: str
) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "c.csv", labelled_texts(10)))
    base = {"dataset_id": dataset["id"], "model": tiny_model_id}
    for strategies, expected in (
        (["transfer_frozen"], "at least 2"),
        (["transfer_frozen", "auto"], "auto"),
        (["lp_ft", "lp_ft"], "once"),
        (["transfer_frozen", "magic"], "magic"),
    ):
        response = client.post("/api/v1/comparisons", json={**base, "strategies": strategies})
        assert response.status_code == 422, response.text
        assert expected in response.text
    assert client.get("/api/v1/comparisons/999999").status_code == 404


def test_comparison_queues_one_job_per_strategy_with_one_seed(
    client: TestClient, tmp_path: Path, tiny_model_id: str
) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "c.csv", labelled_texts(10)))
    response = client.post(
        "/api/v1/comparisons",
        json={"dataset_id": dataset["id"], "model": tiny_model_id, "params": {"seed": 7}},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["job_ids"]) == 5 and not body["finished"]
    jobs = [client.get(f"/api/v1/jobs/{i}").json() for i in body["job_ids"]]
    assert {j["strategy"] for j in jobs} == {s.value for s in Strategy if s is not Strategy.auto}
    assert {j["params"]["seed"] for j in jobs} == {7}
    assert {j["comparison_id"] for j in jobs} == {body["id"]}
    for job_id in body["job_ids"]:  # leave nothing queued for the worker of other tests
        client.post(f"/api/v1/jobs/{job_id}/cancel")
    page = client.get(f"/comparisons/{body['id']}")
    assert page.status_code == 200 and "LP-FT" in page.text


def test_verdict_picks_winner_and_cheapest_within_one_point() -> None:
    results = {
        Strategy.transfer_frozen: (0.905, 10.0),
        Strategy.finetune_full: (0.92, 300.0),
        Strategy.finetune_lora: (0.912, 200.0),
        Strategy.lp_ft: (0.90, 250.0),
    }
    with get_sessionmaker()() as session:
        dataset = session.query(Dataset).first()
        assert dataset is not None
        comparison = Comparison(dataset_id=dataset.id, model="m", metric="macro_f1", params={})
        comparison.jobs = [
            Job(
                dataset_id=dataset.id,
                model="m",
                strategy=s,
                params={},
                status=JobStatus.succeeded,
                results={"test_macro_f1": f1, "wall_seconds": wall},
            )
            for s, (f1, wall) in results.items()
        ] + [
            Job(
                dataset_id=dataset.id,
                model="m",
                strategy=Strategy.transfer_top_k,
                params={},
                status=JobStatus.failed,
            )
        ]
        session.add(comparison)
        session.commit()
        verdict = judge(comparison)
        by_id = {job.id: job.strategy for job in comparison.jobs}
    assert verdict.finished
    assert by_id[verdict.winner_job_id] is Strategy.finetune_full
    # 0.912 is within one point of 0.92 and cheaper than full; 0.905 is not within it.
    assert by_id[verdict.cheapest_job_id] is Strategy.finetune_lora
    assert "1.5× less wall time" in (verdict.summary or "")
