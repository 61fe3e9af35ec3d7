"""A benchmark's own server (`serve`), its user, and an httpx client signed in as it.

The server requires an account (issue 6); benchmarks make one with `tuneboard create-user`
in the server's environment, then sign in through the login form like a browser: the
session cookie rides along and every unsafe request carries the session's CSRF token.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

USER, PASSWORD = "bench", "load test passphrase"  # 10+ characters, no username in it
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def create_user(root: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "app.cli", "create-user", USER, "--admin", "--password-stdin"],
        input=PASSWORD + "\n",
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )


def _csrf(client: httpx.Client, page: str) -> str:
    match = CSRF_META.search(client.get(page).text)
    if match is None:
        raise RuntimeError(f"no CSRF token on {page}")
    return match.group(1)


def sign_in(client: httpx.Client) -> None:
    """Sign `client` in; its later requests carry the session's CSRF token."""
    response = client.post(
        "/login",
        data={"username": USER, "password": PASSWORD, "csrf_token": _csrf(client, "/login")},
    )
    if response.status_code not in (200, 303):
        raise RuntimeError(f"sign-in failed: {response.status_code}")
    client.headers["X-CSRF-Token"] = _csrf(client, "/account")


@contextlib.contextmanager
def serve(root: Path, work: Path, port: int) -> Iterator[httpx.Client]:
    """`tuneboard serve` (web and workers) on SQLite files in `work`, with the benchmark's
    user signed in; stopped, workers included, on the way out."""
    env = {
        **os.environ,
        "TUNEBOARD_DATABASE_URL": f"sqlite:///{work}/db.sqlite",
        "TUNEBOARD_BROKER_URL": f"sqla+sqlite:///{work}/broker.sqlite",
        "TUNEBOARD_DATA_DIR": str(work / "data"),
        "TUNEBOARD_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
    }
    create_user(root, env)
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        cwd=root,
        env=env,
        stdout=(work / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers stop with it
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        for _ in range(120):
            try:
                client.get("/login")
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        sign_in(client)
        yield client
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
