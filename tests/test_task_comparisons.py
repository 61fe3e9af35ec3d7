"""A comparison of frozen features, LoRA and full fine-tuning for each task beyond one class
per row, through the API with a real worker and the tiny BERT: every run succeeds, the
winner is the best by the task's headline in its own direction (lowest MAE for a
regression), and a score the task does not report is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.jobs_api import FINISHED, upload_csv
from tests.processes import wait_for
from tests.task_data import write_conll, write_table
from tests.test_tasks_training import multi_label_examples, regression_examples
from tests.test_token_training import TAGS, tagged_sentences
from worker.training.tasks.base import higher_is_better

STRATEGIES = ["transfer_frozen", "finetune_lora", "finetune_full"]


def dataset_file(task: str, folder: Path) -> Path:
    if task == "multi_label":
        ex = multi_label_examples(120, seed=6)
        names = ["sport", "money", "music"]
        rows = [
            (t, "|".join(names[j] for j in ls)) for t, ls in zip(ex.texts, ex.labels, strict=True)
        ]
        return write_table(folder / "topics.csv", ("text", "topics"), rows)
    if task == "regression":
        ex = regression_examples(120, seed=6)
        return write_table(
            folder / "prices.csv", ("text", "price"), list(zip(ex.texts, ex.labels, strict=True))
        )
    ex = tagged_sentences(120, seed=6)
    return write_conll(
        folder / "entities.conll",
        [(w, [TAGS[t] for t in tags]) for w, tags in zip(ex.words, ex.labels, strict=True)],
    )


@pytest.mark.parametrize(
    ("task", "headline"),
    [("multi_label", "macro_f1"), ("regression", "mae"), ("token_classification", "entity_f1")],
)
def test_each_task_compares_strategies_by_its_headline(
    client: TestClient, worker: Path, tmp_path: Path, tiny_model_id: str, task: str, headline: str
) -> None:
    dataset = upload_csv(client, dataset_file(task, tmp_path))
    assert dataset["task"] == task
    base = {"dataset_id": dataset["id"], "model": tiny_model_id}
    refused = client.post("/api/v1/comparisons", json={**base, "metric": "accuracy"})
    assert refused.status_code == 422 and headline in refused.json()["detail"]

    body = {**base, "strategies": STRATEGIES, "params": {"epochs": 2, "learning_rate": 3e-3}}
    response = client.post("/api/v1/comparisons", json=body)
    assert response.status_code == 201, response.text
    url = f"/api/v1/comparisons/{response.json()['id']}"
    verdict = wait_for(
        lambda: (v := client.get(url).json())["finished"] and v, timeout=300, what=url
    )
    assert verdict["metric"] == headline
    rows = verdict["rows"]
    assert [r["job"]["status"] for r in rows] == ["succeeded"] * 3, rows
    scores = {r["job"]["id"]: r["metric"] for r in rows}
    pick = max if higher_is_better(headline) else min
    assert verdict["winner_job_id"] == pick(scores, key=scores.__getitem__)
    assert headline.replace("_", " ") in verdict["summary"]
    assert ("within 1 %" if headline == "mae" else "within one point") in verdict["summary"]
    for row in rows:
        assert row["job"]["status"] in FINISHED
    page = client.get(f"/comparisons/{verdict['id']}")
    assert page.status_code == 200 and f"Test {headline.replace('_', ' ')}" in page.text
