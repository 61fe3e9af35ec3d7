"""The playground and batch prediction with real processes: a training worker trains a job,
the predict worker answers from the job's export, and the web never loads a model."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import labelled_texts, write_csv
from tests.image_factories import colour_image, colour_zip, make_image_zip
from tests.jobs_api import run_job, upload_csv
from tests.processes import wait_for


@pytest.fixture(scope="module")
def image_job(client: TestClient, worker: Path, tiny_vit_id: str, tmp_path_factory) -> dict:
    archive = colour_zip(tmp_path_factory.mktemp("colours") / "colours.zip", 20)
    dataset = upload_csv(client, archive)
    params = {"epochs": 4, "learning_rate": 3e-3, "batch_size": 8}
    body = {"dataset_id": dataset["id"], "model": tiny_vit_id, "strategy": "finetune_full"}
    job = run_job(client, {**body, "params": params})
    assert job["status"] == "succeeded", (job["error"], worker.read_text()[-3000:])
    assert job["results"]["test_accuracy"] >= 0.8
    return job


@pytest.fixture(scope="module")
def text_job(client: TestClient, worker: Path, tiny_model_id: str, tmp_path_factory) -> dict:
    path = write_csv(tmp_path_factory.mktemp("texts") / "t.csv", labelled_texts(30))
    dataset = upload_csv(client, path)
    params = {"epochs": 8, "learning_rate": 3e-3}
    body = {"dataset_id": dataset["id"], "model": tiny_model_id, "strategy": "transfer_frozen"}
    job = run_job(client, {**body, "params": params})
    assert job["status"] == "succeeded", job["error"]
    return job


def _csv(client: TestClient, prediction: dict) -> list[dict[str, str]]:
    url = f"/api/v1/predictions/{prediction['id']}"
    done = wait_for(
        lambda: (p := client.get(url).json())["status"] != "queued" and p,
        timeout=60,
        what="the batch prediction",
    )
    assert done["status"] == "succeeded", done
    response = client.get(url + "/download")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_an_image_gets_class_probabilities(
    client: TestClient, predictor: Path, image_job: dict
) -> None:
    url = f"/api/v1/jobs/{image_job['id']}/predict"
    response = client.post(url, files={"image": ("x.png", colour_image("green", 500))})
    assert response.status_code == 200, (response.text, predictor.read_text()[-2000:])
    answer = response.json()
    assert answer["status"] == "succeeded"
    probabilities = answer["result"]["probabilities"]
    assert list(probabilities)[0] == "green"  # ranked, highest first
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)

    # Bad input: a clear 422, nothing queued.
    response = client.post(url, files={"image": ("x.png", b"not an image")})
    assert response.status_code == 422 and "not a readable image" in response.json()["detail"]
    response = client.post(url, data={"text": "a text for an image model"})
    assert response.status_code == 422 and "classifies images" in response.json()["detail"]

    page = client.get(f"/jobs/{image_job['id']}").text
    assert "Try it" in page and 'name="image"' in page
    fragment = client.post(
        f"/jobs/{image_job['id']}/playground", files={"image": ("y.png", colour_image("red", 7))}
    )
    assert fragment.status_code == 200 and "sure" in fragment.text or "Asking" in fragment.text


def test_a_zip_of_images_becomes_a_safe_csv(
    client: TestClient, predictor: Path, image_job: dict, tmp_path: Path
) -> None:
    members = {
        f"batch/{c}-{i}.png": colour_image(c, 600 + i) for c in ("red", "blue") for i in range(5)
    }
    members["=HYPERLINK(evil).png"] = colour_image("blue", 700)
    members["batch/readme.txt"] = b"not an image"
    archive = make_image_zip(tmp_path / "batch.zip", members)
    response = client.post(
        f"/api/v1/jobs/{image_job['id']}/predict-batch",
        files={"file": ("batch.zip", archive.read_bytes())},
    )
    assert response.status_code == 202, response.text
    rows = _csv(client, response.json())
    assert len(rows) == 12
    by_file = {r["file"]: r for r in rows}
    assert by_file["batch/red-0.png"]["predicted"] == "red"
    assert by_file["batch/blue-3.png"]["predicted"] == "blue"
    assert by_file["batch/readme.txt"]["error"] and not by_file["batch/readme.txt"]["predicted"]
    # A cell that a spreadsheet would run as a formula is neutralised.
    assert by_file["'=HYPERLINK(evil).png"]["predicted"] == "blue"
    assert set(rows[0]) >= {"file", "predicted", "confidence", "error", "p(red)"}


def test_text_playground_and_batch(
    client: TestClient, predictor: Path, text_job: dict, tmp_path: Path
) -> None:
    url = f"/api/v1/jobs/{text_job['id']}/predict"
    response = client.post(url, data={"text": "goal match team score league"})
    assert response.status_code == 200, predictor.read_text()[-2000:]
    assert list(response.json()["result"]["probabilities"])[0] == "sport"
    assert client.post(url, data={"text": "   "}).status_code == 422

    path = tmp_path / "batch.csv"
    path.write_text("text\n=1+2 bank price market\nsong band album guitar\n")
    response = client.post(
        f"/api/v1/jobs/{text_job['id']}/predict-batch", files={"file": ("b.csv", path.read_bytes())}
    )
    assert response.status_code == 202
    rows = _csv(client, response.json())
    assert [r["predicted"] for r in rows] == ["money", "music"]
    assert rows[0]["text"].startswith("'=1+2")  # neutralised for spreadsheets
    bad = tmp_path / "bad.csv"
    bad.write_text("body\nsomething\n")
    response = client.post(
        f"/api/v1/jobs/{text_job['id']}/predict-batch",
        files={"file": ("bad.csv", bad.read_bytes())},
    )
    assert response.status_code == 422 and "no column 'text'" in response.json()["detail"]


def test_no_playground_before_a_model_exists(
    client: TestClient, tmp_path: Path, tiny_model_id: str
) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "d.csv", labelled_texts(12)))
    job = client.post(
        "/api/v1/jobs",
        json={"dataset_id": dataset["id"], "model": tiny_model_id, "strategy": "transfer_frozen"},
    ).json()
    client.post(f"/api/v1/jobs/{job['id']}/cancel")
    response = client.post(f"/api/v1/jobs/{job['id']}/predict", data={"text": "hello"})
    assert response.status_code == 409 and "no trained model" in response.json()["detail"]
    assert client.get("/api/v1/predictions/999999").status_code == 404
