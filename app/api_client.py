"""The JSON API from a shell: what `tuneboard datasets …` and `tuneboard jobs …` call.

It speaks to a running server (TUNEBOARD_SERVER, default http://127.0.0.1:8000) with an API
token (TUNEBOARD_TOKEN, made on the account page) — the same API the pages use, nothing the
web server does not also offer a browser.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8000"
FINISHED = {"succeeded", "failed", "cancelled"}


class ApiError(RuntimeError):
    """The server refused a request; the message is its own explanation."""


class Client:
    def __init__(self, server: str | None = None, token: str | None = None) -> None:
        server = server or os.environ.get("TUNEBOARD_SERVER") or DEFAULT_SERVER
        token = token or os.environ.get("TUNEBOARD_TOKEN")
        if not token:
            raise ApiError(
                "no API token: make one on the account page and pass --token or set TUNEBOARD_TOKEN"
            )
        self.http = httpx.Client(
            base_url=server.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60, read=600),  # an upload is parsed before the answer
        )

    def _json(self, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiError(f"{response.status_code}: {detail}")

    def upload_dataset(
        self,
        path: Path,
        *,
        name: str | None = None,
        validation: Path | None = None,
        test: Path | None = None,
    ) -> dict[str, Any]:
        handles = {"file": path.open("rb")}
        if validation is not None:
            handles["validation_file"] = validation.open("rb")
        if test is not None:
            handles["test_file"] = test.open("rb")
        try:
            files = {field: (Path(f.name).name, f) for field, f in handles.items()}
            data = {"name": name} if name else {}
            return self._json(self.http.post("/api/v1/datasets", files=files, data=data))
        finally:
            for f in handles.values():
                f.close()

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.http.post("/api/v1/jobs", json=body))

    def job(self, job_id: int) -> dict[str, Any]:
        return self._json(self.http.get(f"/api/v1/jobs/{job_id}"))

    def follow(
        self,
        job_id: int,
        on_update: Callable[[dict[str, Any]], None],
        *,
        every: float = 1.0,
    ) -> dict[str, Any]:
        """Poll the job until it has finished, calling `on_update` with each state."""
        while True:
            job = self.job(job_id)
            on_update(job)
            if job["status"] in FINISHED:
                return job
            time.sleep(every)

    def export(self, job_id: int, target: Path) -> Path:
        with self.http.stream("GET", f"/api/v1/jobs/{job_id}/export") as response:
            if not response.is_success:
                response.read()
                self._json(response)
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            partial.replace(target)
        return target
