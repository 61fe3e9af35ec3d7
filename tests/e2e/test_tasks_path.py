"""Multi-label, regression and entity tagging through the dashboard in headless Chromium,
each with the packaged MiniLM: upload (the task detected and shown), the report, a job from
the form, live curves, the task's result views, the playground, and the download loaded
with the standard class, answering what the playground answered."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import expect

from tests.accounts import PASSWORD
from tests.e2e.conftest import Server, shot
from tests.e2e.test_user_path import assert_usable, chart_points, wait_for_status
from tests.task_data import kaomoji_rows, review_rows, tagged_sentences, write_conll, write_table


def test_first_user_signs_up(page: Any, server: Server) -> None:
    page.goto("/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create admin account").click()
    expect(page).to_have_url(server.url + "/")


def upload(page: Any, path: Path) -> int:
    page.goto("/datasets")
    page.locator("#file").set_input_files(path)
    page.get_by_role("button", name="Upload").click()
    expect(page).to_have_url(re.compile(r"/datasets/\d+$"))
    expect(page.locator("#dataset-state")).to_have_count(0, timeout=60_000)
    return int(page.url.rsplit("/", 1)[1])


def train(page: Any, server: Server, dataset_id: int, **advanced: str) -> int:
    page.goto(f"/jobs/new?dataset_id={dataset_id}")
    page.locator("#model-select").select_option("minilm-l6")
    page.locator('input[name="strategy"][value="transfer_frozen"]').check()
    if advanced:
        page.get_by_text("Advanced settings").click()
        for label, value in advanced.items():
            if label.startswith("select:"):  # a select's name (its label holds its options)
                page.locator(f'select[name="{label[7:]}"]').select_option(value)
            else:
                page.get_by_label(label, exact=True).fill(value)
    assert_usable(page)
    page.get_by_role("button", name="Queue job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    wait_for_status(page, server, "succeeded", timeout=300_000)
    assert chart_points(page) >= 6
    return int(page.url.rsplit("/", 1)[1])


def ask(page: Any, button: str, text: str) -> Any:
    page.get_by_label("Text", exact=True).fill(text)
    page.get_by_role("button", name=button, exact=True).click()
    answer = page.locator("#answer .answer")
    expect(answer).to_be_visible(timeout=60_000)
    return answer


def download(page: Any, tmp_path: Path) -> Path:
    with page.expect_download() as got:
        page.get_by_role("link", name="Download tuned model (ZIP)").click()
    archive = tmp_path / got.value.suggested_filename
    got.value.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "export")
    return tmp_path / "export" / "model"


def test_multi_label(page: Any, server: Server, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    path = write_table(tmp_path / "kaomoji.csv", ("text", "emotion"), kaomoji_rows(400, seed=3))
    dataset_id = upload(page, path)
    expect(page.locator('select[name="task"]')).to_have_value("multi_label")
    expect(page.locator("#co-occurrence")).to_be_visible()
    shot(page, "16-multi-label-dataset")
    assert_usable(page)

    train(page, server, dataset_id, **{"Max tokens per text": "32"})
    outcome = page.locator("#job-outcome")
    expect(outcome.locator(".figures")).to_contain_text("test macro-F1")
    expect(outcome.locator("#per-label tbody tr")).to_have_count(12)
    expect(page.locator('[data-view="thresholds"] canvas')).to_have_count(1)
    # A label's mistakes open below the table.
    outcome.locator("#per-label tbody tr").first.get_by_role("link", name="missed").click()
    expect(page.locator("#label-mistakes h3")).to_contain_text("missed")
    shot(page, "17-multi-label-results")
    assert_usable(page)

    face = "(≧▽≦)"
    answer = ask(page, "Tag", face)
    said = answer.locator("p").first.inner_text()
    folder = download(page, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    outputs = SentenceTransformer(str(folder), device="cpu").encode([face])[0]
    probabilities = 1 / (1 + np.exp(-outputs))
    names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    chosen = [n for n, p in zip(names, probabilities, strict=True) if p >= config["thresholds"][n]]
    shown = "no label" if not chosen else ", ".join(n for n in names if n in chosen)
    assert set(re.split(r", ", said)) == set(re.split(r", ", shown)) or (
        not chosen and said.startswith("no label")
    ), (said, chosen)


def test_regression(page: Any, server: Server, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    path = write_table(tmp_path / "reviews.csv", ("review", "score"), review_rows(400, seed=4))
    dataset_id = upload(page, path)
    expect(page.locator('select[name="task"]')).to_have_value("regression")
    expect(page.locator('[data-view="target"] canvas')).to_have_count(1)
    assert_usable(page)

    train(page, server, dataset_id, **{"select:regression_metric": "rmse"})
    outcome = page.locator("#job-outcome")
    expect(outcome.locator(".figures")).to_contain_text("test RMSE")
    expect(page.locator('[data-view="scatter"] canvas')).to_have_count(1)
    expect(page.locator('[data-view="residuals"] canvas')).to_have_count(1)
    expect(page.locator("#worst-predictions tbody tr")).to_have_count(20)
    shot(page, "18-regression-results")
    assert_usable(page)

    text = "The room was superb and the staff were excellent."
    said = float(ask(page, "Predict", text).locator("strong").inner_text())
    folder = download(page, tmp_path)
    value = float(SentenceTransformer(str(folder), device="cpu").encode([text])[0][0])
    assert abs(value - said) <= 0.01 * max(1.0, abs(value)), (value, said)  # shown to 4 digits


def test_entity_tagging(page: Any, server: Server, tmp_path: Path) -> None:
    from transformers import pipeline

    dataset_id = upload(page, write_conll(tmp_path / "people.conll", tagged_sentences(250)))
    expect(page.locator("#summary")).to_contain_text("PER")
    assert_usable(page)

    train(page, server, dataset_id)
    outcome = page.locator("#job-outcome")
    expect(outcome.locator(".figures")).to_contain_text("test entity F1")
    expect(outcome.locator("#per-type tbody tr")).to_have_count(3)
    expect(page.locator("#tagged-sentences mark.entity").first).to_be_visible(timeout=30_000)
    shot(page, "19-entity-results")
    assert_usable(page)

    text = "Omar joined Hooli last year ."
    answer = ask(page, "Find entities", text)
    marked = {
        (m.get_attribute("data-label"), m.evaluate("el => el.firstChild.textContent"))
        for m in answer.locator("mark.entity").all()
    }
    folder = download(page, tmp_path)
    tag = pipeline("token-classification", model=str(folder), aggregation_strategy="simple")
    found = {(e["entity_group"], text[e["start"] : e["end"]]) for e in tag(text)}
    assert marked == found and ("ORG", "Hooli") in found, (marked, found)
