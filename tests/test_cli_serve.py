"""`tuneboard serve`: migrates, serves the pages and starts a worker beside them; stopping
the server stops the worker too (nothing orphaned)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, embedded_env, free_port, stop_group, wait_for


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "args=", "--ppid", str(pid)], capture_output=True, text=True)
    return out.stdout.splitlines()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_web_and_worker_and_stops_both(tmp_path: Path, stop_signal: int) -> None:
    port = free_port()
    env = embedded_env(tmp_path, port)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # A fresh install has no user: every page leads to the first-run page.
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/") == 303, timeout=60, what="the server")
        setup = httpx.get(f"http://127.0.0.1:{port}/setup", timeout=5)
        assert setup.status_code == 200 and "Welcome to Tuneboard" in setup.text
        assert any("app.cli worker" in c for c in _children(proc.pid))
        # Only the server gets the signal (as from a process manager); it must stop the worker.
        proc.send_signal(stop_signal)
        proc.wait(timeout=40)
        wait_for(lambda: not _group_alive(proc.pid), timeout=30, what="the worker to stop")
    finally:
        stop_group(proc)
        log.close()


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
