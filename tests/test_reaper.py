"""Jobs a dead worker left `running` go back to the queue, or fail after their attempts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from app.db import get_sessionmaker
from app.jobs import service as jobs
from app.jobs.models import Job, JobStatus
from app.jobs.strategies import Strategy
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import upload_csv


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
        requeued = jobs.reap_stale(session, stale_after=timedelta(minutes=2), max_attempts=3)
        assert lost.id in requeued and exhausted.id not in requeued and alive.id not in requeued
        for job in (exhausted, alive):
            session.refresh(job)
        assert exhausted.status is JobStatus.failed and "3 attempts" in (exhausted.error or "")
        assert alive.status is JobStatus.running
        # Reaping again finds nothing: the guarded update already moved the lost job.
        assert lost.id not in jobs.reap_stale(
            session, stale_after=timedelta(minutes=2), max_attempts=3
        )
    client.post(f"/api/v1/jobs/{lost.id}/cancel")  # leave nothing for the shared worker
