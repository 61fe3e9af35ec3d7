"""The packaged MiniLM, trained for real by the worker on BBC News with frozen features;
the export is reloaded with plain sentence-transformers and scored on the held-out test
rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from app.datasets.models import Dataset
from app.datasets.training_data import load_training_data
from app.db import get_sessionmaker
from tests.factories import bbc_news_rows, write_csv
from tests.jobs_api import export_folder, run_job, upload_csv

pytestmark = pytest.mark.slow
PER_CLASS = 100  # 500 articles: the full set is in bench/; this keeps the suite in minutes


def test_frozen_minilm_on_bbc_news(client: TestClient, worker: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    dataset = upload_csv(
        client, write_csv(tmp_path / "bbc.csv", bbc_news_rows(PER_CLASS)), name="BBC News sample"
    )
    body = {
        "dataset_id": dataset["id"],
        "model": "minilm-l6",
        "strategy": "transfer_frozen",
        "params": {"epochs": 20, "max_length": 128},
    }
    first = run_job(client, body, timeout=400)
    assert first["status"] == "succeeded", first["error"]
    results = first["results"]
    assert results["test_accuracy"] >= 0.85, results
    assert results["feature_cache_hit"] is False
    assert results["trainable_params"] < results["total_params"] / 50  # only the head trains

    # The export alone, outside Tuneboard, reproduces the job's test accuracy.
    # A sentence-transformers folder whose last module (the head) gives the logits.
    folder = export_folder(client, first["id"], tmp_path / "export")
    model = SentenceTransformer(str(folder), device="cpu")
    assert model.max_seq_length == 128  # encode truncates as the job did
    id2label = json.loads((folder / "config.json").read_text())["id2label"]
    with get_sessionmaker()() as session:
        data = load_training_data(session.get(Dataset, dataset["id"]), get_settings(), seed=42)
    texts = [data.texts[i] for i in data.test_idx]
    truth = [data.label_names[data.labels[i]] for i in data.test_idx]
    logits = model.encode(texts, convert_to_tensor=True)
    predicted = [id2label[str(int(i))] for i in logits.argmax(-1)]
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    assert accuracy == pytest.approx(results["test_accuracy"], abs=1 / len(truth))

    # A second job on the same model and data reuses the cached features.
    second = run_job(client, body, timeout=200)
    assert second["status"] == "succeeded"
    assert second["results"]["feature_cache_hit"] is True
    assert second["results"]["wall_seconds"] < 0.5 * results["wall_seconds"]
