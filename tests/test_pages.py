"""Every page renders, and every script or stylesheet it loads is served by Tuneboard itself
(the dashboard must work on a machine with no internet)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import labelled_texts, write_csv
from tests.jobs_api import upload_csv

ASSET = re.compile(r'(?:src|href)="([^"]+\.(?:js|css|svg))"')


def test_pages_render_with_local_assets_only(client: TestClient, tmp_path: Path) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "p.csv", labelled_texts(10)))
    pages = [
        "/",
        "/datasets",
        f"/datasets/{dataset['id']}",
        "/jobs/new",
        f"/jobs/new?dataset_id={dataset['id']}",
        "/jobs",
        "/docs",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assets = ASSET.findall(response.text)
        assert assets, url
        for asset in assets:
            assert asset.startswith("/static/"), (url, asset)
            assert client.get(asset).status_code == 200, asset


def test_column_form_rerenders_the_summary_fragment(client: TestClient, tmp_path: Path) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "c.csv", labelled_texts(10)))
    url = f"/datasets/{dataset['id']}/columns"
    ok = client.post(url, data={"text_column": "text", "label_column": "label"})
    assert ok.status_code == 200 and 'id="summary"' in ok.text and "<html" not in ok.text
    bad = client.post(url, data={"text_column": "label", "label_column": "label"})
    assert bad.status_code == 422 and "previous choice is kept" in bad.text


def test_job_form_errors_are_shown_next_to_the_form(client: TestClient, tmp_path: Path) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "f.csv", labelled_texts(10)))
    response = client.post(
        "/jobs",
        data={
            "dataset_id": str(dataset["id"]),
            "model": "nope",
            "strategy": "transfer_frozen",
            "epochs": "3",
        },
    )
    assert response.status_code == 422
    assert "unknown model" in response.text and 'role="alert"' in response.text
    response = client.post(
        "/jobs",
        data={
            "dataset_id": str(dataset["id"]),
            "model": "minilm-l6",
            "strategy": "transfer_frozen",
            "epochs": "zero",
        },
    )
    assert response.status_code == 422
    # The error names the field as the form labels it, in a sentence.
    assert "Epochs: input should be a valid integer" in response.text


def test_form_compare_button_queues_a_comparison(
    client: TestClient, tmp_path: Path, tiny_model_id: str
) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "k.csv", labelled_texts(10)))
    form = {
        "dataset_id": str(dataset["id"]),
        "model": tiny_model_id,
        "action": "compare",
        "compare_strategies": ["transfer_frozen", "lp_ft"],
        "epochs": "1",
    }
    response = client.post("/jobs", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    comparison = client.get("/api/v1" + response.headers["location"]).json()
    assert [r["job"]["strategy"] for r in comparison["rows"]] == ["transfer_frozen", "lp_ft"]
    for job_id in comparison["job_ids"]:
        client.post(f"/api/v1/jobs/{job_id}/cancel")
    one = client.post("/jobs", data={**form, "compare_strategies": ["lp_ft"]})
    assert one.status_code == 422
    assert "Compare strategies: tick at least two strategies to compare." in one.text


def test_form_shows_what_auto_would_pick(client: TestClient, tmp_path: Path) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "a.csv", labelled_texts(10)))
    fragment = client.get(
        "/jobs/recommendation", params={"dataset_id": dataset["id"], "model": "minilm-l6"}
    )
    assert fragment.status_code == 200
    assert "Auto would pick Transfer learning — frozen features" in fragment.text
    api = client.get(
        "/api/v1/recommendation", params={"dataset_id": dataset["id"], "model": "minilm-l6"}
    ).json()
    assert api["strategy"] == "transfer_frozen" and "24 training examples" in api["reason"]


def test_confusion_cell_lists_its_misclassified_examples(
    client: TestClient, tmp_path: Path
) -> None:
    import json

    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.jobs.artifacts import job_dir
    from app.jobs.models import Job, JobStatus
    from app.jobs.strategies import Strategy
    from worker.training.job_files import VALIDATION_PREDICTIONS

    dataset = upload_csv(client, write_csv(tmp_path / "m.csv", labelled_texts(10)))
    with get_sessionmaker()() as session:
        job = Job(
            owner_id=dataset["owner_id"],
            dataset_id=dataset["id"],
            model="m",
            strategy=Strategy.transfer_frozen,
            params={},
            status=JobStatus.succeeded,
        )
        session.add(job)
        session.commit()
        job_id = job.id
    folder = job_dir(get_settings(), job_id)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "index": 1,
            "text": "a <b>bold</b> guess",
            "true": "sport",
            "predicted": "music",
            "confidence": 0.6,
        },
        {"index": 2, "text": "surer", "true": "sport", "predicted": "music", "confidence": 0.9},
        {
            "index": 3,
            "text": "other cell",
            "true": "money",
            "predicted": "music",
            "confidence": 0.7,
        },
    ]
    (folder / VALIDATION_PREDICTIONS).write_text(json.dumps(rows))
    page = client.get(
        f"/jobs/{job_id}/misclassified", params={"true": "sport", "predicted": "music"}
    ).text
    assert "True “sport”, predicted “music” (2)" in page
    assert page.index("surer") < page.index("guess")  # most confident mistakes first
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "other cell" not in page
