"""Real Tuneboard processes for tests: started with the test environment, always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def embedded_env(home: Path, port: int) -> dict[str, str]:
    """The environment for a `tuneboard serve` of its own, on the embedded defaults: SQLite
    database and broker, data folder and model root, all under `home`."""
    return {
        **os.environ,
        "TUNEBOARD_DATABASE_URL": f"sqlite:///{home}/tuneboard.db",
        "TUNEBOARD_BROKER_URL": f"sqla+sqlite:///{home}/broker.db",
        "TUNEBOARD_DATA_DIR": str(home / "data"),
        "TUNEBOARD_MODEL_ROOTS": f'["{home / "models"}"]',
        "TUNEBOARD_PORT": str(port),
    }


@contextmanager
def worker_process(log_path: Path, *, queues: str = "cpu") -> Iterator[subprocess.Popen[bytes]]:
    """`tuneboard worker` as its own process group, so teardown also reaches the training
    child it forks."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", f"--queues={queues}"],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_group(proc)


@contextmanager
def cli_process(
    args: list[str], env: dict[str, str], log: Path, *, stop_timeout: float = 20
) -> Iterator[subprocess.Popen[bytes]]:
    """`tuneboard <args>` with `env`, its output appended to `log`, in a process group of its
    own so that teardown reaches its children too."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_group(proc, timeout=stop_timeout)


def stop_group(proc: subprocess.Popen[bytes], *, timeout: float = 20) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
