"""Several devices per job (issue 16), as the web admits and shows them: a job may ask for
more than one device only when a live worker on its queue has that many slots; the fleet,
the new-job form and the job page say which slots are busy. Workers announce themselves
through the real heartbeat service; no job trains here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db import get_sessionmaker
from app.jobs.models import Job, JobStatus
from app.workers import service as workers
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import upload_csv

CPU_WORKER = "ddp-cpu-host:101"  # two gloo processes
GPU_WORKER = "ddp-gpu-host:202"  # two GPUs


def _beat(worker_id: str, queues: list[str], device: str, device_count: int) -> None:
    hostname, pid = worker_id.split(":")
    with get_sessionmaker()() as session:
        workers.beat(
            session,
            worker_id=worker_id,
            hostname=hostname,
            pid=int(pid),
            queues=queues,
            device=device,
            device_count=device_count,
        )


@pytest.fixture
def two_slot_workers() -> Iterator[None]:
    """A CPU worker with two gloo slots and a GPU worker with two GPUs, alive for one test."""
    _beat(CPU_WORKER, ["cpu"], "cpu (4 cores)", 2)
    _beat(GPU_WORKER, ["gpu"], "cuda: 2 × test GPU", 2)
    try:
        yield
    finally:
        with get_sessionmaker()() as session:
            workers.leave(session, CPU_WORKER)
            workers.leave(session, GPU_WORKER)


@pytest.fixture
def dataset_id(client: TestClient, tmp_path: Path) -> int:
    return int(upload_csv(client, write_csv(tmp_path / "d.csv", labelled_texts(12)))["id"])


@pytest.fixture
def made_jobs(client: TestClient) -> Iterator[list[int]]:
    """Ids of jobs a test queued; cancelled afterwards (those it set running too, which a
    cancel request would leave running for want of a worker to stop them), so no worker of
    another test ever takes one and no slot stays busy."""
    ids: list[int] = []
    yield ids
    with get_sessionmaker()() as session:
        finished = {"status": JobStatus.cancelled, "phase": "cancelled", "worker_id": None}
        session.execute(update(Job).where(Job.id.in_(ids)).values(**finished))
        session.commit()


def _job(dataset_id: int, model: str, **more: Any) -> dict[str, Any]:
    return {"dataset_id": dataset_id, "model": model, "strategy": "finetune_full", **more}


def _run_on(job_id: int, worker_id: str, slots: list[int]) -> None:
    """What a worker's claim writes: the job runs and holds these slots of that worker."""
    with get_sessionmaker()() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=JobStatus.running, worker_id=worker_id, device_ids=slots)
        )
        session.commit()


def test_more_devices_than_any_live_worker_has_is_a_422_that_says_what_to_do(
    client: TestClient, dataset_id: int, tiny_model_id: str
) -> None:
    body = _job(dataset_id, tiny_model_id, device="cpu", params={"devices": 2})
    answer = client.post("/api/v1/jobs", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert "devices is 2" in detail and "cpu queue" in detail, detail
    assert "TUNEBOARD_WORKER_DEVICES" in detail and "start a worker" in detail, detail


def test_a_live_two_slot_worker_admits_two_devices(
    client: TestClient,
    dataset_id: int,
    tiny_model_id: str,
    two_slot_workers: None,
    made_jobs: list[int],
) -> None:
    answer = client.post(
        "/api/v1/jobs", json=_job(dataset_id, tiny_model_id, device="cpu", params={"devices": 2})
    )
    assert answer.status_code == 201, answer.text
    made_jobs.append(answer.json()["id"])
    assert answer.json()["params"]["devices"] == 2
    with get_sessionmaker()() as session:
        job = session.get(Job, made_jobs[-1])
        assert job is not None and job.devices == 2 and job.queue == "cpu"
    # Three is more than either worker has: the answer names the most there is.
    three = _job(dataset_id, tiny_model_id, device="gpu", params={"devices": 3})
    answer = client.post("/api/v1/jobs", json=three)
    assert answer.status_code == 422
    assert "the most any live worker on the gpu queue has is 2" in answer.json()["detail"]
    assert "ask for 2 or fewer" in answer.json()["detail"]


def test_frozen_features_take_one_device(
    client: TestClient,
    dataset_id: int,
    tiny_model_id: str,
    two_slot_workers: None,
    made_jobs: list[int],
) -> None:
    frozen = _job(dataset_id, tiny_model_id, strategy="transfer_frozen", params={"devices": 2})
    answer = client.post("/api/v1/jobs", json=frozen)
    assert answer.status_code == 422, answer.text
    assert "transfer_frozen" in answer.json()["detail"]
    assert "L-BFGS" in answer.json()["detail"]
    # In a comparison the frozen job holds one device and the stepping one the two asked for.
    body = {
        "dataset_id": dataset_id,
        "model": tiny_model_id,
        "strategies": ["transfer_frozen", "finetune_full"],
        "device": "cpu",
        "params": {"devices": 2},
    }
    answer = client.post("/api/v1/comparisons", json=body)
    assert answer.status_code == 201, answer.text
    rows = {row["job"]["strategy"]: row["job"] for row in answer.json()["rows"]}
    made_jobs.extend(job["id"] for job in rows.values())
    assert rows["transfer_frozen"]["params"]["devices"] == 1
    assert rows["finetune_full"]["params"]["devices"] == 2
    with get_sessionmaker()() as session:
        held = {session.get(Job, job["id"]).devices for job in rows.values()}  # type: ignore[union-attr]
    assert held == {1, 2}


def test_workers_list_their_slots_and_the_jobs_on_them(
    client: TestClient,
    bob_client: TestClient,
    admin_client: TestClient,
    dataset_id: int,
    tiny_model_id: str,
    two_slot_workers: None,
    made_jobs: list[int],
) -> None:
    answer = client.post(
        "/api/v1/jobs", json=_job(dataset_id, tiny_model_id, device="gpu", params={"devices": 2})
    )
    job_id = answer.json()["id"]
    made_jobs.append(job_id)
    _run_on(job_id, GPU_WORKER, [0, 1])

    admin_view = {w["id"]: w for w in admin_client.get("/api/v1/workers").json()["workers"]}
    assert admin_view[GPU_WORKER]["device_count"] == 2
    assert admin_view[GPU_WORKER]["busy_devices"] == {"0": job_id, "1": job_id}
    assert admin_view[CPU_WORKER]["device_count"] == 2
    assert admin_view[CPU_WORKER]["busy_devices"] == {}
    # Alice owns the job and sees its id; Bob sees that the slots are busy, not whose job.
    mine = [w for w in client.get("/api/v1/workers").json()["workers"] if w["busy_devices"]]
    assert [w["busy_devices"] for w in mine] == [{"0": job_id, "1": job_id}]
    assert all(w["hostname"] is None for w in mine)
    theirs = [w for w in bob_client.get("/api/v1/workers").json()["workers"] if w["busy_devices"]]
    assert [w["busy_devices"] for w in theirs] == [{"0": None, "1": None}]


def test_new_job_form_offers_devices_only_while_a_worker_has_several(
    client: TestClient, dataset_id: int
) -> None:
    page = client.get(f"/jobs/new?dataset_id={dataset_id}").text
    assert 'name="devices"' not in page
    _beat(CPU_WORKER, ["cpu"], "cpu (4 cores)", 2)
    try:
        page = client.get(f"/jobs/new?dataset_id={dataset_id}").text
        assert 'name="devices"' in page
        assert "batch size ÷ devices rows per device" in page
        # Only a CPU worker has several slots: the form says what those are good for.
        assert "CPU processes with gloo: for trying data parallelism" in page
        _beat(GPU_WORKER, ["gpu"], "cuda: 2 × test GPU", 2)
        page = client.get(f"/jobs/new?dataset_id={dataset_id}").text
        assert 'name="devices"' in page and "CPU processes with gloo" not in page
    finally:
        with get_sessionmaker()() as session:
            workers.leave(session, CPU_WORKER)
            workers.leave(session, GPU_WORKER)


def test_home_page_and_job_page_show_the_slots(
    client: TestClient,
    admin_client: TestClient,
    dataset_id: int,
    tiny_model_id: str,
    two_slot_workers: None,
    made_jobs: list[int],
) -> None:
    # A one-device job on the second of the CPU worker's two slots.
    answer = client.post("/api/v1/jobs", json=_job(dataset_id, tiny_model_id, device="cpu"))
    job_id = answer.json()["id"]
    made_jobs.append(job_id)
    _run_on(job_id, CPU_WORKER, [1])

    fleet = client.get("/workers/fragment").text
    link = f'<a href="/jobs/{job_id}">job #{job_id}</a>'
    assert f"2 CPU processes (gloo): 0 free, 1 → {link}" in fleet
    assert "2 slots: 0 free, 1 free" in fleet
    assert "2 CPU processes (gloo)" in client.get("/").text

    page = client.get(f"/jobs/{job_id}").text
    assert "devices: 1 (slot 1)" in page and CPU_WORKER not in page
    assert f"devices: 1 (slot 1 on {CPU_WORKER})" in admin_client.get(f"/jobs/{job_id}").text


def test_the_form_queues_a_two_device_job_and_shows_a_refusal(
    client: TestClient,
    dataset_id: int,
    tiny_model_id: str,
    two_slot_workers: None,
    made_jobs: list[int],
) -> None:
    form = {
        "dataset_id": str(dataset_id),
        "model": tiny_model_id,
        "strategy": "finetune_full",
        "device": "cpu",
        "devices": "2",
    }
    response = client.post("/jobs", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    job_id = int(response.headers["location"].rsplit("/", 1)[-1])
    made_jobs.append(job_id)
    assert client.get(f"/api/v1/jobs/{job_id}").json()["params"]["devices"] == 2
    # More than any live worker has: the form comes back with the reason, nothing queued.
    refused = client.post("/jobs", data={**form, "devices": "5"})
    assert refused.status_code == 422
    assert "ask for 2 or fewer" in refused.text
