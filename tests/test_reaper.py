"""Jobs a dead worker left `running` go back to the queue, or fail after their attempts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from app.db import get_sessionmaker
from app.jobs import service as jobs
from app.jobs.models import Device, Job, JobStatus
from app.jobs.strategies import Strategy
from app.queue import HARD_LIMIT_GRACE_SECONDS
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import upload_csv
from worker import housekeeping


def test_stale_running_jobs_are_requeued_or_failed(client: TestClient, tmp_path: Path) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "r.csv", labelled_texts(10)))
    long_ago = jobs.now() - timedelta(minutes=10)

    def running(attempts: int, heartbeat: object) -> Job:
        return Job(
            dataset_id=dataset["id"],
            model="no-such-model",
            params={"seed": 1},
            strategy=Strategy.transfer_frozen,
            status=JobStatus.running,
            attempts=attempts,
            heartbeat_at=heartbeat,
        )

    with get_sessionmaker()() as session:
        lost, exhausted, alive = running(1, long_ago), running(3, long_ago), running(1, jobs.now())
        session.add_all([lost, exhausted, alive])
        session.commit()
        session.expire_all()  # reload as a worker would: SQLite gives back naive datetimes
        requeued = housekeeping.reap_stale(
            session, stale_after=timedelta(minutes=2), max_attempts=3
        )
        assert lost.id in requeued and exhausted.id not in requeued and alive.id not in requeued
        for job in (exhausted, alive):
            session.refresh(job)
        assert exhausted.status is JobStatus.failed and "3 attempts" in (exhausted.error or "")
        assert alive.status is JobStatus.running
        # Reaping again finds nothing: the guarded update already moved the lost job.
        assert lost.id not in housekeeping.reap_stale(
            session, stale_after=timedelta(minutes=2), max_attempts=3
        )
    client.post(f"/api/v1/jobs/{lost.id}/cancel")  # leave nothing for the shared worker


def test_a_job_killed_at_its_hard_time_limit_fails_with_that_reason(
    client: TestClient, tmp_path: Path
) -> None:
    """Celery kills a job's process HARD_LIMIT_GRACE_SECONDS past its time limit; the reaper
    then finds it silent and fails it as a time limit, rather than running it again."""
    dataset = upload_csv(client, write_csv(tmp_path / "t.csv", labelled_texts(10)))
    with get_sessionmaker()() as session:
        overdue = Job(
            dataset_id=dataset["id"],
            model="no-such-model",
            params={"seed": 1, "time_limit_minutes": 1},
            strategy=Strategy.transfer_frozen,
            status=JobStatus.running,
            attempts=1,
            started_at=jobs.now() - timedelta(minutes=1, seconds=HARD_LIMIT_GRACE_SECONDS + 5),
            heartbeat_at=jobs.now() - timedelta(minutes=5),
        )
        session.add(overdue)
        session.commit()
        assert (
            housekeeping.reap_stale(session, stale_after=timedelta(minutes=2), max_attempts=3) == []
        )
        session.refresh(overdue)
        assert overdue.status is JobStatus.failed
        assert (overdue.error or "").startswith("time limit")


def test_auto_jobs_stranded_on_gpu_move_to_cpu_when_no_gpu_worker_lives(
    client: TestClient, tmp_path: Path
) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "g.csv", labelled_texts(10)))
    with get_sessionmaker()() as session:
        made = jobs.now() - timedelta(minutes=5)

        def waiting(device: Device) -> Job:
            return Job(
                dataset_id=dataset["id"],
                model="no-such-model",
                params={"seed": 1},
                strategy=Strategy.transfer_frozen,
                status=JobStatus.queued,
                device=device,
                queue="gpu",
                created_at=made,
            )

        auto, pinned = waiting(Device.auto), waiting(Device.gpu)
        session.add_all([auto, pinned])
        session.commit()
        settle = timedelta(seconds=15)
        assert housekeeping.reroute_auto(session, gpu_alive=True, settle=settle) == []
        assert housekeeping.reroute_auto(session, gpu_alive=False, settle=settle) == [auto.id]
        session.refresh(auto)
        session.refresh(pinned)
        assert (auto.queue, pinned.queue) == ("cpu", "gpu")  # gpu jobs wait for a GPU
    for job in (auto, pinned):
        client.post(f"/api/v1/jobs/{job.id}/cancel")  # leave nothing for the shared worker
