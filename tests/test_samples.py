"""One-click sample datasets: made through the upload path, from the pages and the API, for
the signed-in user only, under the same storage quota as an upload."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings, get_settings
from app.datasets import samples
from tests.accounts import csrf_of, ensure_user, sign_in
from tests.jobs_api import CHECKED, wait_checked

EXPECTED = {
    "bbc-news": (
        "text",
        {t: 50 for t in ("business", "entertainment", "politics", "sports", "tech")},
    ),
    "digits": ("image", {str(d): 40 for d in range(10)}),
}
SAMPLE_FORM = re.compile(r'<form method="post" action="/datasets/samples/([a-z-]+)"')


@pytest.fixture
def newcomer(ingester: Path) -> Iterator[TestClient]:
    """A user signed in for the first time, with no datasets."""
    from app.main import app

    username = f"new-{uuid.uuid4().hex[:8]}"
    ensure_user(username)
    with TestClient(app) as c:
        sign_in(c, username)
        yield c


def _form_post(client: TestClient, sample_id: str):
    """The button's plain form post, with the page's CSRF token as its hidden field."""
    token = csrf_of(client, "/datasets")
    return client.post(
        f"/datasets/samples/{sample_id}", data={"csrf_token": token}, follow_redirects=False
    )


def _check(dataset: dict, sample_id: str) -> None:
    modality, counts = EXPECTED[sample_id]
    assert dataset["modality"] == modality
    assert dataset["name"] == samples.SAMPLES[sample_id].title
    assert dataset["report"]["class_counts"] == counts
    assert dataset["num_rows"] == sum(counts.values())
    assert dataset["label_names"] == sorted(counts)
    assert dataset["report"]["errors"] == []


def test_the_api_lists_the_samples(client: TestClient) -> None:
    response = client.get("/api/v1/datasets/samples")
    assert response.status_code == 200, response.text
    listed = {s["id"]: s for s in response.json()}
    assert set(listed) == set(EXPECTED)
    for sample_id, (modality, _) in EXPECTED.items():
        entry = listed[sample_id]
        assert set(entry) == {"id", "title", "description", "modality"}
        assert entry["modality"] == modality and entry["title"] and entry["description"]


@pytest.mark.parametrize("sample_id", sorted(EXPECTED))
def test_the_page_button_creates_the_sample_and_shows_it(
    newcomer: TestClient, sample_id: str
) -> None:
    # The header the sign-in helper set is dropped: the form field alone must do.
    newcomer.headers.pop("X-CSRF-Token")
    response = _form_post(newcomer, sample_id)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    match = re.fullmatch(r"/datasets/(\d+)", location)
    assert match, location
    page = newcomer.get(location)
    assert page.status_code == 200 and samples.SAMPLES[sample_id].title in page.text
    _check(wait_checked(newcomer, int(match.group(1))), sample_id)
    assert "Validation report" in newcomer.get(location).text


@pytest.mark.parametrize("sample_id", sorted(EXPECTED))
def test_the_api_creates_the_sample(client: TestClient, sample_id: str) -> None:
    response = client.post(f"/api/v1/datasets/samples/{sample_id}", params=CHECKED)
    assert response.status_code == 201, response.text
    _check(response.json(), sample_id)


def test_an_unknown_sample_is_a_404(client: TestClient) -> None:
    before = len(client.get("/api/v1/datasets").json())
    assert client.post("/api/v1/datasets/samples/no-such-sample").status_code == 404
    assert _form_post(client, "no-such-sample").status_code == 404
    assert len(client.get("/api/v1/datasets").json()) == before


def test_the_form_post_without_its_token_is_refused(newcomer: TestClient) -> None:
    newcomer.headers.pop("X-CSRF-Token")
    response = newcomer.post("/datasets/samples/digits", follow_redirects=False)
    assert response.status_code == 403
    assert newcomer.get("/api/v1/datasets").json() == []


def test_home_offers_the_samples_only_while_there_is_no_dataset(newcomer: TestClient) -> None:
    home = newcomer.get("/").text
    assert set(SAMPLE_FORM.findall(home)) == set(EXPECTED)
    assert "Try the BBC News sample" in home and "Try the handwritten digits sample" in home
    assert samples.SAMPLES["bbc-news"].description in home
    assert "Start here" in home and "Upload a labelled file" in home
    assert set(SAMPLE_FORM.findall(newcomer.get("/datasets").text)) == set(EXPECTED)

    assert newcomer.post("/api/v1/datasets/samples/bbc-news", params=CHECKED).status_code == 201
    home = newcomer.get("/").text
    assert SAMPLE_FORM.findall(home) == [] and "Start here" not in home
    assert SAMPLE_FORM.findall(newcomer.get("/datasets").text) == []


def test_another_user_does_not_see_the_sample(client: TestClient, bob_client: TestClient) -> None:
    dataset = client.post("/api/v1/datasets/samples/digits", params=CHECKED).json()
    assert dataset["id"] not in [d["id"] for d in bob_client.get("/api/v1/datasets").json()]
    assert bob_client.get(f"/api/v1/datasets/{dataset['id']}").status_code == 404
    assert bob_client.get(f"/datasets/{dataset['id']}").status_code == 404
    assert f'href="/datasets/{dataset["id"]}"' not in bob_client.get("/datasets").text


def test_a_full_storage_quota_refuses_a_sample_as_it_refuses_an_upload(
    client: TestClient, data_root: Path
) -> None:
    from app.main import app

    app.dependency_overrides[get_settings] = lambda: Settings(max_storage_bytes_per_user=1000)
    try:
        before = client.get("/api/v1/datasets").json()
        sample = samples.SAMPLES["bbc-news"]
        upload = client.post(
            "/api/v1/datasets", files={"file": (sample.filename, io.BytesIO(sample.build()))}
        )
        assert upload.status_code == 429 and "storage quota" in upload.json()["detail"]
        api = client.post("/api/v1/datasets/samples/bbc-news")
        assert (api.status_code, api.json()) == (429, upload.json())
        page = _form_post(client, "bbc-news")
        assert page.status_code == 429 and upload.json()["detail"] in page.text
        assert 'role="alert"' in page.text
        assert client.get("/api/v1/datasets").json() == before
        assert not list((data_root / "data" / "uploads").glob("*"))  # nothing left behind
    finally:
        app.dependency_overrides.pop(get_settings, None)
