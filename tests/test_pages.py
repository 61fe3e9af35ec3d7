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
    assert response.status_code == 422 and "epochs" in response.text
