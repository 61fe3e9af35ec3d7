"""Each task end to end through the API with the packaged MiniLM and real workers: upload
(task detected), the report, a job, its results under the task's names, the playground,
and the download loaded with the standard class, answering what the playground answered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.jobs_api import CHECKED, export_folder, run_job, upload_csv
from tests.processes import wait_for
from tests.task_data import (
    KAOMOJI_TAGS,
    kaomoji_rows,
    review_rows,
    tagged_sentences,
    write_conll,
    write_table,
)

pytestmark = pytest.mark.slow


def ask(client: TestClient, job_id: int, text: str) -> dict:
    response = client.post(f"/api/v1/jobs/{job_id}/predict", data={"text": text})
    assert response.status_code == 200, response.text
    return response.json()["result"]


def frozen_minilm(client: TestClient, dataset: dict, worker: Path, **params) -> dict:
    body = {
        "dataset_id": dataset["id"],
        "model": "minilm-l6",
        "strategy": "transfer_frozen",
        "params": {"max_length": 48, **params},
    }
    job = run_job(client, body, timeout=600)
    assert job["status"] == "succeeded", (job["error"], worker.read_text()[-3000:])
    return job


def test_multi_label_kaomoji(
    client: TestClient, worker: Path, predictor: Path, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    path = write_table(tmp_path / "kaomoji.csv", ("text", "emotion"), kaomoji_rows(600))
    dataset = upload_csv(client, path, name="kaomoji emotions")
    assert dataset["task"] == "multi_label" and dataset["label_separator"] == "|"
    assert set(dataset["label_names"]) == set(KAOMOJI_TAGS)
    labels = dataset["report"]["labels"]
    assert labels["labels_per_row"] > 1 and labels["co_occurrence"][0]["rows"] > 0

    job = frozen_minilm(client, dataset, worker, max_length=32)
    r = job["results"]
    assert r["headline_metric"] == "test_macro_f1"
    assert {"test_micro_f1", "test_subset_accuracy", "test_hamming_loss"} <= set(r)
    # Synonyms come together, so a label's F1 is its group's: well above chance (the share
    # of rows carrying a label would be ~0.3 F1 for "always say it").
    assert r["test_micro_f1"] > 0.6, r
    assert set(r["per_label"]) == set(KAOMOJI_TAGS)

    face = "(◕‿◕)"
    answer = ask(client, job["id"], face)
    assert set(answer["labels"]) <= set(KAOMOJI_TAGS) and answer["thresholds"]

    # The download: a sentence-transformers folder; sigmoid + the stored thresholds give
    # the playground's labels.
    folder = export_folder(client, job["id"], tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    outputs = SentenceTransformer(str(folder), device="cpu").encode([face])[0]
    probabilities = 1 / (1 + np.exp(-outputs))
    names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    chosen = [n for n, p in zip(names, probabilities, strict=True) if p >= config["thresholds"][n]]
    assert sorted(chosen) == sorted(answer["labels"])


def test_regression_reviews(
    client: TestClient, worker: Path, predictor: Path, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    path = write_table(tmp_path / "reviews.csv", ("review", "score"), review_rows(500))
    dataset = upload_csv(client, path, name="hotel review scores")
    assert dataset["task"] == "regression" and dataset["label_names"] == ["score"]
    assert sum(dataset["report"]["labels"]["histogram"]["counts"]) == 500

    job = frozen_minilm(client, dataset, worker)
    r = job["results"]
    assert r["headline_metric"] == "test_mae" and r["headline_higher_is_better"] is False
    assert r["test_r2"] > 0.5 and r["test_spearman"] > 0.7, r
    assert len(r["worst_predictions"]) == 20

    text = "The room was superb and the staff were lovely."
    answer = ask(client, job["id"], text)
    assert answer["target"] == "score" and answer["value"] > 60  # ~93 by the rule
    # The download answers in points with nothing applied: the scale is in its head.
    folder = export_folder(client, job["id"], tmp_path / "export")
    value = float(SentenceTransformer(str(folder), device="cpu").encode([text])[0][0])
    assert value == pytest.approx(answer["value"], abs=1e-3)


def test_entity_tagging_conll(
    client: TestClient, worker: Path, predictor: Path, tmp_path: Path
) -> None:
    from transformers import pipeline

    path = write_conll(tmp_path / "people.conll", tagged_sentences(300))
    response = client.post(
        "/api/v1/datasets", files={"file": (path.name, path.read_bytes())}, params=CHECKED
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["task"] == "token_classification"
    assert dataset["label_names"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert dataset["report"]["labels"]["entities"]["PER"] > 100

    job = frozen_minilm(client, dataset, worker)
    r = job["results"]
    assert r["headline_metric"] == "test_entity_f1"
    assert r["test_entity_f1"] > 0.8, r
    assert set(r["per_type"]) == {"LOC", "ORG", "PER"}

    text = "Priya Patel flew to Osaka on Monday ."
    answer = ask(client, job["id"], text)
    found = {(e["entity_group"], e["text"]) for e in answer["entities"]}
    assert ("LOC", "Osaka") in found, answer
    folder = export_folder(client, job["id"], tmp_path / "export")
    tag = pipeline("token-classification", model=str(folder), aggregation_strategy="simple")
    assert {(e["entity_group"], text[e["start"] : e["end"]]) for e in tag(text)} == found

    # Batch: one row per entity.
    batch = tmp_path / "batch.csv"
    batch.write_text("text\nOmar joined Globex last year .\nNothing happened today .\n")
    response = client.post(
        f"/api/v1/jobs/{job['id']}/predict-batch", files={"file": (batch.name, batch.read_bytes())}
    )
    assert response.status_code == 202
    url = f"/api/v1/predictions/{response.json()['id']}"
    wait_for(lambda: client.get(url).json()["status"] == "succeeded", timeout=120, what=url)
    lines = client.get(url + "/download").text.strip().splitlines()
    assert lines[0].startswith("line,text,entity,label,start,end")
    assert any(",ORG," in line and "Globex" in line for line in lines[1:]), lines
