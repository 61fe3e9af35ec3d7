"""Image multi-label and regression through the dashboard in headless Chromium, with the
packaged EfficientNet-Lite0 on frozen features: a ZIP with labels.csv uploaded (the task
detected, or named in the upload form), the dataset page, a job from the form, the task's
result views, the playground's image input, and the download loaded as its model card says,
answering what the playground answered. Data: real handwritten digits (tests/digit_tasks.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import expect

from tests.accounts import PASSWORD
from tests.digit_tasks import exported_outputs, pairs, pairs_zip, values, values_zip
from tests.e2e.conftest import Server, shot
from tests.e2e.test_tasks_path import download
from tests.e2e.test_user_path import assert_usable, wait_for_status


def test_first_user_signs_up(page: Any, server: Server) -> None:
    page.goto("/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create admin account").click()
    expect(page).to_have_url(server.url + "/")


def upload(page: Any, path: Path, task: str | None = None) -> int:
    page.goto("/datasets")
    page.locator("#file").set_input_files(path)
    if task is not None:  # named in the upload form's options, not detected
        page.get_by_text("Options: name, columns, task").click()
        page.locator('#upload-form select[name="task"]').select_option(task)
    page.get_by_role("button", name="Upload").click()
    expect(page).to_have_url(re.compile(r"/datasets/\d+$"))
    expect(page.locator("#dataset-state")).to_have_count(0, timeout=60_000)
    # An image dataset's task is shown, not chosen: its labels file says what it is.
    expect(page.locator('select[name="task"]')).to_have_count(0)
    expect(page.locator("#summary")).to_contain_text("Labels come from labels.csv")
    return int(page.url.rsplit("/", 1)[1])


def train(page: Any, server: Server, dataset_id: int) -> int:
    page.goto(f"/jobs/new?dataset_id={dataset_id}")
    page.locator("#model-select").select_option("efficientnet-lite0")
    page.locator('input[name="strategy"][value="transfer_frozen"]').check()
    assert_usable(page)
    page.get_by_role("button", name="Queue job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    wait_for_status(page, server, "succeeded", timeout=300_000)
    return int(page.url.rsplit("/", 1)[1])


def ask(page: Any, png: bytes, tmp_path: Path) -> Any:
    """The playground's image input: choosing a file submits the form."""
    probe = tmp_path / "probe.png"
    probe.write_bytes(png)
    page.locator("#playground-image").set_input_files(probe)
    answer = page.locator("#answer .answer")
    expect(answer).to_be_visible(timeout=60_000)
    expect(answer).to_contain_text("probe.png")
    return answer


def assert_thumbnails_load(page: Any, where: str) -> None:
    """Every thumbnail in `where` (images load lazily: scrolled to first) is a picture."""
    for image in page.locator(f"{where} img").all():
        image.scroll_into_view_if_needed()
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0, image.get_attribute("src")


def test_image_multi_label(page: Any, server: Server, tmp_path: Path) -> None:
    dataset_id = upload(page, pairs_zip(tmp_path / "digit-pairs.zip", 300, seed=5))
    expect(page.locator("#summary")).to_contain_text("5 labels")
    expect(page.locator("#co-occurrence")).to_be_visible()
    assert_usable(page)

    train(page, server, dataset_id)
    outcome = page.locator("#job-outcome")
    expect(outcome.locator(".figures")).to_contain_text("test macro-F1")
    expect(outcome.locator("#per-label tbody tr")).to_have_count(5)
    expect(page.locator('[data-view="thresholds"] canvas')).to_have_count(1)
    # A label's mistakes open below the table, each image with its thumbnail.
    outcome.locator("#per-label tbody tr").first.get_by_role("link", name="wrongly given").click()
    expect(page.locator("#label-mistakes h3")).to_contain_text("wrongly given")
    assert_thumbnails_load(page, "#label-mistakes")
    shot(page, "20-image-multi-label-results")
    assert_usable(page)

    png = pairs(1, seed=98)[0][0]
    said = ask(page, png, tmp_path).locator("p strong").first.inner_text()
    folder = download(page, tmp_path)
    outputs, config = exported_outputs(folder, [png])
    probabilities = 1 / (1 + np.exp(-outputs[0]))
    names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    chosen = [n for n, p in zip(names, probabilities, strict=True) if p >= config["thresholds"][n]]
    assert said == (", ".join(chosen) or "no label"), (said, chosen, probabilities)


def test_image_regression(page: Any, server: Server, tmp_path: Path) -> None:
    # Whole digits 0-9 would be detected as ten classes: the upload names the task.
    dataset_id = upload(page, values_zip(tmp_path / "digit-values.zip", 300, seed=5), "regression")
    expect(page.locator("#summary")).to_contain_text("predicts value")
    expect(page.locator('[data-view="target"] canvas')).to_have_count(1)
    assert_usable(page)

    train(page, server, dataset_id)
    outcome = page.locator("#job-outcome")
    expect(outcome.locator(".figures")).to_contain_text("test MAE")
    expect(page.locator('[data-view="scatter"] canvas')).to_have_count(1)
    expect(page.locator("#worst-predictions tbody tr")).to_have_count(20)
    assert_thumbnails_load(page, "#worst-predictions")
    shot(page, "21-image-regression-results")
    assert_usable(page)

    png = values(10, seed=98)[0][0]
    said = float(ask(page, png, tmp_path).locator("strong").inner_text())
    folder = download(page, tmp_path)
    value = float(exported_outputs(folder, [png])[0][0, 0])
    assert abs(value - said) <= 1e-3 * max(1.0, abs(value)), (value, said)  # shown to 4 digits
