"""The JSON API from a shell: what `tuneboard datasets …` and `tuneboard jobs …` call.

It speaks to a running server (TUNEBOARD_SERVER, default http://127.0.0.1:8000) with an API
token (--token, TUNEBOARD_TOKEN, or the one `tuneboard login` kept for that server) — the
same API the pages use, nothing the web server does not also offer a browser.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app import credentials
from app.config import ClientSettings

DEFAULT_SERVER = "http://127.0.0.1:8000"
FINISHED = {"succeeded", "failed", "cancelled"}


class ApiError(RuntimeError):
    """The server refused a request; the message is its own explanation."""


class Client:
    def __init__(self, server: str | None = None, token: str | None = None) -> None:
        settings = ClientSettings()
        server = server or settings.server or DEFAULT_SERVER
        token = token or settings.token or credentials.token_for(settings.credentials_file, server)
        if not token:
            raise ApiError(
                "no API token: run `tuneboard login`, or pass --token or set TUNEBOARD_TOKEN "
                "(tokens are made on the account page)"
            )
        self.http = httpx.Client(
            base_url=server.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60, read=600),  # a big upload is sent in one request
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

    def dataset(self, dataset_id: int) -> dict[str, Any]:
        return self._json(self.http.get(f"/api/v1/datasets/{int(dataset_id)}"))

    def follow_dataset(
        self,
        dataset_id: int,
        on_update: Callable[[dict[str, Any]], None],
        *,
        every: float = 0.5,
    ) -> dict[str, Any]:
        """Poll an uploaded dataset until its check has ended (`ready` or `invalid`)."""
        while True:
            dataset = self.dataset(dataset_id)
            on_update(dataset)
            if dataset["status"] != "checking":
                return dataset
            time.sleep(every)

    def delete(self, kind: str, object_id: int) -> None:
        """DELETE /api/v1/<kind>/<id>: kind is datasets, jobs, comparisons or predictions."""
        response = self.http.delete(f"/api/v1/{kind}/{int(object_id)}")
        if response.status_code != 204:
            self._json(response)

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
