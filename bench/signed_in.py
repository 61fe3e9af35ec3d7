"""A benchmark's own user on the server it started, and an httpx client signed in as it.

The server requires an account (issue 6); benchmarks make one with `tuneboard create-user`
in the server's environment, then sign in through the login form like a browser: the
session cookie rides along and every unsafe request carries the session's CSRF token.
"""

from __future__ import annotations

import re
import subprocess
import sys
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
