"""The dashboard in a real browser: one real `tuneboard serve` (web server, training worker
and predict worker, as `make run` starts them) on a fresh database, and Debian's chromium
driven by Playwright.

The tests in a module share one server and one signed-in browser context and run in file
order, the order a person would take: each leaves behind what the next one starts from.
Screenshots go to TUNEBOARD_E2E_SCREENSHOTS (default var/test-artifacts/screenshots);
`make screenshots` points it at docs/screenshots, which the README shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import ROOT, embedded_env, free_port, stop_group, wait_for

CHROMIUM = Path(os.environ.get("TUNEBOARD_E2E_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / os.environ.get("TUNEBOARD_E2E_SCREENSHOTS", "var/test-artifacts/screenshots")
# Flags for a closed network: without the background-networking ones chromium keeps trying
# Google's hosts at every start.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Server:
    url: str
    log: Path
    data: Path
    # What one test leaves for the next (dataset id, job ids, the playground's answer).
    state: dict[str, Any] = field(default_factory=dict)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """`tuneboard serve` with its workers on a fresh SQLite database: no user yet, so the
    first page a person sees is the first-run setup."""
    home = Path(tempfile.mkdtemp(prefix="tuneboard-e2e-"))
    port = free_port()
    env = {**embedded_env(home, port), "TUNEBOARD_MAX_UPLOAD_BYTES": str(20 * 1024 * 1024)}
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        server = Server(url=f"http://127.0.0.1:{port}", log=log, data=home / "data")
        try:
            wait_for(lambda: _answers(server.url, proc), timeout=120, what="tuneboard serve")
            yield server
        finally:
            stop_group(proc)


def _answers(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"tuneboard serve exited with {proc.returncode}")
    try:
        # 200, or 303 to the first-run page while no user exists
        return httpx.get(url + "/login", timeout=2).status_code in (200, 303)
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def watched_tab(context: Any) -> Any:
    """A new tab whose dialogs (an alert from injected script, say) are recorded and
    dismissed, and whose script errors and Content-Security-Policy violations are recorded:
    the tests assert there were none."""
    tab = context.new_page()
    tab.dialogs, tab.script_errors, tab.csp_violations = [], [], []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    tab.on("pageerror", lambda e: tab.script_errors.append(str(e)))
    # The pages run under a Content-Security-Policy with no inline script or style; the
    # browser reports anything it blocks on the console.
    tab.on(
        "console",
        lambda m: "Content Security Policy" in m.text and tab.csp_violations.append(m.text),
    )
    return tab


@pytest.fixture(scope="module")
def page(browser: Any, server: Server) -> Iterator[Any]:
    """One laptop-sized, watched tab for the whole module."""
    context = browser.new_context(
        base_url=server.url, viewport=LAPTOP, accept_downloads=True, locale="en-GB"
    )
    context.set_default_timeout(15_000)
    yield watched_tab(context)
    context.close()


def shot(page: Any, name: str, part: str | None = None) -> Path:
    """A full-page screenshot, or of the `part` selector only, as a test artifact (and, with
    `make screenshots`, for the README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (re.sub(r"[^\w.-]+", "_", name) + ".png")
    if part:
        page.locator(part).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    if call.when == "call":
        item.failed_call = outcome.get_result().failed  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed test leaves a picture of the page as it was, beside the other artifacts."""
    yield
    if getattr(request.node, "failed_call", False) and "page" in request.fixturenames:
        shot(request.getfixturevalue("page"), f"FAILED-{request.node.name}")
