"""The same migrations and job services on the real PostgreSQL at 127.0.0.1:5432.

CI sets TUNEBOARD_TEST_REQUIRE_POSTGRES=1, turning an unreachable server into a failure
rather than a skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import service as jobs
from app.jobs.models import Job, JobStatus, Strategy
from app.migrate import downgrade_base, upgrade_head
from tests.factories import dataset_row
from worker import job_records

PG_URL = os.environ.get(
    "TUNEBOARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="module")
def pg() -> Iterator[sessionmaker[Session]]:
    engine: Engine = create_engine(PG_URL, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as exc:
        if os.environ.get("TUNEBOARD_TEST_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc.orig}")
    with engine.begin() as conn:
        downgrade_base(conn)  # start from an empty schema, then run the real migrations
        upgrade_head(conn)
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


def _job(session: Session) -> Job:
    dataset = dataset_row("pg")
    job = Job(
        dataset=dataset, model="minilm-l6", strategy=Strategy.finetune_full, params={"epochs": 1}
    )
    session.add(job)
    session.commit()
    return job


def test_claim_is_atomic_under_concurrency(pg: sessionmaker[Session]) -> None:
    with pg() as session:
        job_id = _job(session).id

    def try_claim(_: int) -> bool:
        with pg() as session:
            return job_records.claim(session, job_id) is not None

    with ThreadPoolExecutor(max_workers=8) as pool:
        wins = list(pool.map(try_claim, range(16)))
    assert wins.count(True) == 1
    with pg() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status is JobStatus.running and job.attempts == 1


def test_progress_metrics_and_finish_round_trip(pg: sessionmaker[Session]) -> None:
    with pg() as session:
        job_id = _job(session).id
        assert job_records.claim(session, job_id) is not None
        job_records.record_progress(
            session, job_id, step=3, total_steps=10, phase="training", eta=7.5
        )
        job_records.add_metrics(session, job_id, step=3, epoch=0.3, values={"train_loss": 1.25})
        job_records.add_log(session, job_id, "hello")
        job_records.finish(
            session, job_id, status=JobStatus.succeeded, results={"test_accuracy": 0.9}
        )
    with pg() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.succeeded and job.results == {"test_accuracy": 0.9}
        assert jobs.metric_series(session, job_id)["train_loss"]["value"] == [1.25]
        assert [line.message for line in jobs.log_tail(session, job_id)] == ["hello"]
        # A finished job cannot be finished again by a late or duplicate worker.
        job_records.finish(session, job_id, status=JobStatus.failed, error="late")
        session.refresh(job)
        assert job.status is JobStatus.succeeded
