"""A first-time user's whole path through the dashboard, in headless Chromium against the real
`tuneboard serve`: set up, sign in, upload with the progress bar, fix a column, train the
packaged MiniLM on BBC News, watch the chart, read the results, try the model, download and
load it, compare strategies, cancel a job — and the pages hold up on a phone.

The tests run in file order and build on each other (one server, one tab: see conftest.py).
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.accounts import PASSWORD
from tests.e2e.conftest import LAPTOP, PHONE, Server, shot, watched_tab
from tests.factories import bbc_news_rows

# A class name that is also markup: it must show as text everywhere and never run.
PAYLOAD = '<img src=x onerror=alert(1)><script>alert("x")</script>'
SPORT = "The striker scored twice as the home side won the cup final at Wembley on Saturday."
JOB_DONE = 180_000  # ms: a MiniLM job on 120 articles takes well under a minute on 2 cores


def assert_usable(page: Any) -> None:
    """What every page must hold to: each control has a name a screen reader can say, nothing
    is wider than the window, no script failed, no dialog opened, the Content-Security-Policy
    blocked nothing."""
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll(
              'input:not([type=hidden]), select, textarea, button')]
            .filter((el) => el.offsetParent !== null || el.type === 'file')
            .filter((el) => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
              || el.getAttribute('aria-labelledby') || el.title
              || (el.tagName === 'BUTTON' && el.textContent.trim())))
            .map((el) => el.outerHTML.slice(0, 120))"""
    )
    assert unnamed == [], f"controls without a label on {page.url}: {unnamed}"
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    if overflow > 1:
        culprits = page.evaluate(
            """() => [...document.querySelectorAll('main *')]
                .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
                .filter((el) => !el.closest('.scroll'))
                .map((el) => `${el.tagName}.${el.className} ${el.getBoundingClientRect().width}`)
                .slice(0, 8)"""
        )
        raise AssertionError(f"{page.url} is {overflow}px wider than the window: {culprits}")
    assert page.script_errors == [], page.script_errors
    assert page.dialogs == [], f"a dialog opened: {page.dialogs}"
    assert page.csp_violations == [], f"blocked by the policy: {page.csp_violations}"


def chart_points(page: Any, selector: str = "#charts") -> int:
    return int(page.locator(selector).get_attribute("data-points") or 0)


def wait_for_status(page: Any, server: Server, status: str, timeout: int = JOB_DONE) -> None:
    try:
        expect(page.locator(f'#job-status[data-status="{status}"]')).to_be_attached(timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"job never reached {status}; log:\n{server.log_tail()}") from exc


def bbc_csv(path: Path) -> Path:
    """120 BBC News articles as title, article and topic columns; the "tech" topic is renamed
    to the markup payload. Column detection takes `title` (a known text name) for the text,
    which a person fixes to `article`."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["title", "article", "topic"])
        for text, topic in bbc_news_rows(per_class=24, seed=7):
            title = " ".join(text.split()[:8])
            writer.writerow([title, text, PAYLOAD if topic == "tech" else topic])
    return path


def test_first_run_makes_an_admin_and_signs_in_by_keyboard(page: Any, server: Server) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    expect(page.get_by_role("heading", name="Welcome to Tuneboard")).to_be_visible()
    shot(page, "01-first-run")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create admin account").click()
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_role("heading", name="Start here")).to_be_visible()
    shot(page, "02-home-first-time")
    assert_usable(page)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    shot(page, "03-sign-in-refused")
    # Keyboard only: the username field has the focus, Tab moves on, Enter submits.
    page.get_by_label("Username").fill("")
    page.get_by_label("Username").focus()
    page.keyboard.type("ada")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.url + "/")
    assert_usable(page)


def test_upload_shows_progress_then_a_column_is_fixed(
    page: Any, server: Server, tmp_path: Path
) -> None:
    page.goto("/datasets")
    assert_usable(page)
    # The upload is throttled so the bar has time to move; what it shows is recorded in
    # sessionStorage, which outlives the jump to the new dataset's page.
    page.evaluate(
        """() => {
          sessionStorage.setItem('progress', '[]');
          const bar = document.getElementById('upload-progress');
          new MutationObserver(() => {
            const seen = JSON.parse(sessionStorage.getItem('progress'));
            seen.push([bar.hidden, Number(bar.value)]);
            sessionStorage.setItem('progress', JSON.stringify(seen));
          }).observe(bar, { attributes: true });
        }"""
    )
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 60_000},
    )
    page.locator("#file").set_input_files(bbc_csv(tmp_path / "bbc-news.csv"))
    expect(page.locator("#chosen")).to_have_text("bbc-news.csv")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-percent")).to_contain_text("Uploading")
    shot(page, "04-uploading")
    expect(page).to_have_url(re.compile(r"/datasets/\d+$"), timeout=30_000)
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1,
    })  # fmt: skip
    seen = page.evaluate("() => JSON.parse(sessionStorage.getItem('progress'))")
    shown = [value for hidden, value in seen if not hidden]
    assert len({round(v) for v in shown if 0 < v < 100}) >= 2, f"the bar did not move: {seen}"
    server.state["dataset_id"] = int(page.url.rsplit("/", 1)[1])

    # The file is stored; the dataset page shows "Checking…" (polled) until the ingest worker
    # has read it, then the report swaps in. Detection took the short `title` column for the
    # text; the label shows as plain text.
    expect(page.locator('select[name="text_column"]')).to_have_value("title", timeout=30_000)
    expect(page.locator("#dataset-state")).to_have_count(0)
    expect(page.locator(".bar-label", has_text=PAYLOAD)).to_have_text(PAYLOAD)
    assert page.locator("img[src=x], body script:not([src])").count() == 0

    # A wrong choice is refused beside the form and keeps the earlier one ...
    page.locator('select[name="label_column"]').select_option("article")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#summary .error")).to_contain_text("previous choice is kept")
    expect(page.locator('select[name="label_column"]')).to_have_value("topic")
    shot(page, "05-column-refused")
    # ... and the right one applies in place.
    page.locator('select[name="text_column"]').select_option("article")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#summary .error")).to_have_count(0)
    expect(page.locator("table.preview th").nth(1)).to_have_text("article")
    shot(page, "06-dataset")
    assert_usable(page)


def test_a_bad_file_gets_its_reason_and_a_way_back(page: Any, tmp_path: Path) -> None:
    page.goto("/datasets")
    bad = tmp_path / "one-class.csv"
    bad.write_text("text,label\n" + "".join(f"row {i},same\n" for i in range(20)))
    page.locator("#file").set_input_files(bad)
    page.get_by_role("button", name="Upload").click()
    # Stored, then checked by the worker: the dataset page says why it cannot be used.
    expect(page).to_have_url(re.compile(r"/datasets/\d+$"))
    error = page.locator("#dataset-state .error")
    expect(error).to_contain_text("class", timeout=30_000)
    expect(page.get_by_role("link", name="Train a model on this dataset")).to_have_count(0)
    shot(page, "07-upload-refused")
    assert_usable(page)
    page.get_by_role("link", name="Upload a fixed file").click()
    expect(page).to_have_url(re.compile(r"/datasets#upload-form$"))
    refused = page.locator("table.list tbody tr", has_text="one-class.csv")
    expect(refused).to_contain_text("refused")  # kept with its reason, not trainable
    expect(refused.get_by_role("link", name="Train")).to_have_count(0)


def _new_job(page: Any, server: Server, strategy: str, **advanced: str) -> None:
    page.goto(f"/jobs/new?dataset_id={server.state['dataset_id']}")
    page.locator("#model-select").select_option("minilm-l6")
    page.locator(f'input[name="strategy"][value="{strategy}"]').check()
    if advanced:
        page.get_by_text("Advanced settings").click()
        for label, value in advanced.items():
            page.get_by_label(label, exact=True).fill(value)


def test_frozen_minilm_job_draws_its_chart_live_then_shows_results(
    page: Any, server: Server
) -> None:
    _new_job(page, server, "transfer_frozen", **{"Max tokens per text": "96"})
    shot(page, "08-new-job")
    assert_usable(page)
    page.get_by_role("button", name="Queue job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    server.state["job_id"] = int(page.url.rsplit("/", 1)[1])
    page.evaluate("() => { window.stillThisPage = true; }")
    # No points until the features pass has run, then they arrive without a reload.
    expect(page.locator("#charts-empty")).to_be_visible()
    expect(page.locator("#charts")).to_have_attribute("data-points", re.compile(r"[1-9]"),
                                                      timeout=JOB_DONE)  # fmt: skip
    assert page.evaluate("() => window.stillThisPage === true")
    wait_for_status(page, server, "succeeded")
    assert page.evaluate("() => window.stillThisPage === true")
    expect(page.locator("#charts canvas")).to_have_count(2)
    # The head is fitted once per L2 strength, three at least (the best, then two worse):
    # losses, accuracy and macro-F1 at each.
    assert chart_points(page) >= 12

    results = page.locator("#job-outcome")
    figures = results.locator(".figures")
    expect(figures).to_contain_text("test accuracy")
    expect(figures).to_contain_text("chosen on validation loss")
    expect(results).to_contain_text("SentenceTransformer(folder).encode(texts)")  # what loads it
    accuracy = float(figures.locator(".figure").first.inner_text().rstrip("%"))
    assert accuracy >= 50, f"MiniLM frozen features scored {accuracy}% on BBC News"
    confusion = results.locator("table.confusion").first
    expect(confusion.locator("th", has_text=PAYLOAD).first).to_have_text(PAYLOAD)
    assert page.locator("img[src=x]").count() == 0
    shot(page, "09-job-results")
    assert_usable(page)


def test_the_playground_answers_and_the_download_loads(
    page: Any, server: Server, tmp_path: Path
) -> None:
    page.goto(f"/jobs/{server.state['job_id']}")
    page.get_by_label("Text", exact=True).fill(SPORT)
    page.get_by_role("button", name="Classify").click()
    answer = page.locator("#answer .answer")
    expect(answer).to_be_visible(timeout=60_000)
    said = answer.locator("strong").first.inner_text()
    shot(page, "10-playground", part="#playground")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download tuned model (ZIP)").click()
    archive = tmp_path / download.value.suggested_filename
    download.value.save_as(archive)
    folder = tmp_path / "model"
    with zipfile.ZipFile(archive) as z:
        z.extractall(folder)

    from sentence_transformers import SentenceTransformer

    # MiniLM exports a sentence-transformers folder; its last module (the head) gives logits.
    model_dir = next(p.parent for p in folder.rglob("modules.json"))
    model = SentenceTransformer(str(model_dir), device="cpu")
    id2label = json.loads((model_dir / "config.json").read_text())["id2label"]
    predicted = id2label[str(int(model.encode([SPORT], convert_to_tensor=True).argmax()))]
    assert predicted == said, f"the download says {predicted}, the playground said {said}"
    assert PAYLOAD in id2label.values()


def test_a_comparison_runs_and_its_page_overlays_the_curves(page: Any, server: Server) -> None:
    _new_job(page, server, "transfer_frozen", **{"Max tokens per text": "48"})
    for box in page.locator('input[name="compare_strategies"]').all():
        box.set_checked(box.get_attribute("value") in ("transfer_frozen", "transfer_top_k"))
    page.get_by_role("button", name="Compare ticked strategies").click()
    expect(page).to_have_url(re.compile(r"/comparisons/\d+$"))
    rows = page.locator("#comparison-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#comparison-table .status.succeeded")).to_have_count(
        2, timeout=2 * JOB_DONE
    )
    expect(page.locator(".recommend", has_text="Verdict")).to_be_visible()
    expect(page.locator("#comparison-table .badge", has_text="best")).to_have_count(1)
    expect(page.locator("#overlay canvas")).to_have_count(1)
    assert chart_points(page, "#overlay") >= 2
    page.get_by_label("Show").select_option("val_loss")
    expect(page.locator("#overlay canvas")).to_have_count(1)
    shot(page, "11-comparison")
    assert_usable(page)


def test_a_running_job_can_be_cancelled(page: Any, server: Server) -> None:
    _new_job(page, server, "finetune_full", **{"Epochs": "30", "Max tokens per text": "32"})
    page.get_by_role("button", name="Queue job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    wait_for_status(page, server, "running", timeout=60_000)
    # Points keep arriving while it trains (each epoch adds validation points).
    expect(page.locator("#charts")).to_have_attribute("data-points", re.compile(r"[1-9]"),
                                                      timeout=90_000)  # fmt: skip
    first = chart_points(page)
    page.wait_for_function(
        f"() => Number(document.getElementById('charts').dataset.points) > {first}",
        timeout=90_000,
    )
    shot(page, "12-job-running")
    page.get_by_role("button", name="Cancel").click()
    wait_for_status(page, server, "cancelled", timeout=60_000)
    expect(page.get_by_role("link", name="Download tuned model (ZIP)")).to_have_count(0)
    assert_usable(page)


def test_a_new_user_starts_from_a_sample_dataset(browser: Any, page: Any, server: Server) -> None:
    # The admin adds a user on the Users page ...
    page.goto("/admin/users")
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password (10 characters or more").fill(PASSWORD)
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("cell", name="grace", exact=True)).to_be_visible()
    shot(page, "13-users")
    assert_usable(page)
    page.goto("/account")
    page.get_by_label("Name").fill("laptop CLI")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Create token").click()
    expect(page.locator(".token")).to_have_text(re.compile(r"^tb_"))
    shot(page, "14-account-token")
    assert_usable(page)

    # ... who signs in to an empty dashboard that says where to start.
    context = browser.new_context(base_url=server.url, viewport=page.viewport_size)
    try:
        grace = watched_tab(context)
        grace.goto("/jobs")
        grace.get_by_label("Username").fill("grace")
        grace.get_by_label("Password").fill(PASSWORD)
        grace.get_by_role("button", name="Sign in").click()
        expect(grace).to_have_url(re.compile(r"/jobs$"))  # back where she was going
        expect(grace.locator(".empty")).to_contain_text("No jobs yet")
        grace.goto("/")
        expect(grace.get_by_role("heading", name="Start here")).to_be_visible()
        expect(grace.get_by_text("bbc-news.csv")).to_have_count(0)  # not hers
        grace.get_by_role("button", name="Try the Handwritten digits sample").click()
        expect(grace).to_have_url(re.compile(r"/datasets/\d+$"))
        expect(grace.locator("main h1")).to_have_text("Handwritten digits")
        thumbs = grace.locator(".thumbs img")
        expect(thumbs.first).to_be_visible(timeout=30_000)  # once the worker has checked it
        thumbs.first.scroll_into_view_if_needed()
        grace.wait_for_function(
            "() => [...document.querySelectorAll('.thumbs img')].slice(0, 5)"
            ".every((img) => img.complete && img.naturalWidth > 0)"
        )
        shot(grace, "15-image-dataset")
        assert_usable(grace)
        grace.goto("/")
        expect(grace.get_by_role("heading", name="Start here")).to_have_count(0)
    finally:
        context.close()


@pytest.mark.parametrize("screen", ["laptop", "phone"])
@pytest.mark.parametrize(
    "path", ["/", "/datasets", "/dataset", "/jobs", "/job", "/comparisons"], ids=str
)
def test_every_page_fits_the_screen(page: Any, server: Server, path: str, screen: str) -> None:
    where = {
        "/dataset": f"/datasets/{server.state.get('dataset_id')}",
        "/job": f"/jobs/{server.state.get('job_id')}",
    }.get(path, path)
    page.set_viewport_size(PHONE if screen == "phone" else LAPTOP)
    try:
        page.goto(where)
        expect(page.locator("main h1")).to_be_visible()
        name = {"/": "home", "/dataset": "dataset", "/job": "job"}.get(path, path.strip("/"))
        shot(page, f"{screen}-{name}")
        assert_usable(page)
    finally:
        page.set_viewport_size(LAPTOP)


def test_the_policy_is_on_and_its_violations_are_seen(page: Any, server: Server) -> None:
    """What the other tests' "no violation" rests on: the page's policy blocks an inline
    handler injected into it, and the tab records the violation."""
    page.goto("/")
    expect(page.locator("main h1")).to_be_visible()
    page.evaluate(
        """() => document.body.insertAdjacentHTML(
              'beforeend', '<img src="/static/favicon.svg" onload="window.__ran = 1">')"""
    )
    expect(page.locator("img[onload]")).to_have_count(1)
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__ran") is None
    assert any("script-src" in v for v in page.csp_violations), page.csp_violations
    page.csp_violations.clear()
