"""RELIABILITY row 30: one user's many jobs do not starve another's. Which queued job a free
worker takes is the database's fair-share choice (worker/fair_share.py), checked here on
the real SQLite database, on the real PostgreSQL, and end to end with a real worker; and
non-admin users cannot ask for week-long time limits."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.accounts.models import User
from app.config import get_settings
from app.db import get_sessionmaker
from app.jobs import service as jobs
from app.jobs.models import Job, JobStatus, Strategy
from app.migrate import upgrade_head
from tests.factories import dataset_row, labelled_texts, write_csv
from tests.jobs_api import FINISHED, upload_csv
from tests.processes import wait_for
from worker import job_records
from worker.fair_share import claim_next

PG_ADMIN = os.environ.get(
    "TUNEBOARD_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)


def _users(session: Session, *names: str) -> list[int]:
    users = [User(username=f"{n}-{uuid.uuid4().hex[:8]}", password_hash="-") for n in names]
    session.add_all(users)
    session.commit()
    return [u.id for u in users]


def _queue_jobs(session: Session, queue: str, owners: list[int]) -> list[int]:
    """One queued job per entry of `owners`, in that order, on a queue no worker consumes."""
    dataset = dataset_row("fair")
    made = [
        Job(
            owner_id=owner,
            dataset=dataset,
            model="minilm-l6",
            strategy=Strategy.transfer_frozen,
            params={"seed": 1},
            queue=queue,
        )
        for owner in owners
    ]
    session.add_all(made)
    session.commit()
    return [job.id for job in made]


def _run_one(sessions: sessionmaker[Session], queue: str) -> int | None:
    """What one worker does with one message: claim the next job and finish it."""
    with sessions() as session:
        job = claim_next(session, queue=queue)
        if job is None:
            return None
        job_records.finish(session, job.id, status=JobStatus.succeeded)
        return job.id


def check_order(sessions: sessionmaker[Session]) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    with sessions() as session:
        a, b, c = _users(session, "a", "b", "c")
        a_jobs = _queue_jobs(session, queue, [a] * 20)
        (b_job,) = _queue_jobs(session, queue, [b])
    # Two workers: the first takes A's oldest job; the second B's, although it is 21st.
    with sessions() as session:
        first, second = claim_next(session, queue=queue), claim_next(session, queue=queue)
        assert first is not None and second is not None
        assert (first.id, second.id) == (a_jobs[0], b_job)
        for job in (first, second):
            job_records.finish(session, job.id, status=JobStatus.succeeded)
    assert _run_one(sessions, queue) == a_jobs[1]  # B has nothing left: A's turn again

    # Round-robin with one worker: A, B, C, A, B, C… although each queued all at once.
    with sessions() as session:
        mine = {
            owner: _queue_jobs(session, queue, [owner] * 2) for owner in (a, b, c)
        }  # A's, then B's, then C's
        request = session.get(Job, mine[c][0])
        assert request is not None
        jobs.request_cancel(session, request)  # a cancelled job is never claimed
    order = [_run_one(sessions, queue) for _ in range(25)]
    # C never ran a job: first. Then whoever started longest ago: B (A ran last), A, B (C
    # has nothing left), then A's 17 older jobs and its two new ones.
    assert order[:4] == [mine[c][1], mine[b][0], a_jobs[2], mine[b][1]], order[:4]
    assert order[4:23] == a_jobs[3:] + mine[a]
    assert order[23:] == [None, None]  # nothing left: a worker that finds nothing returns


def check_concurrent_claims(sessions: sessionmaker[Session]) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    with sessions() as session:
        owners = _users(session, "x", "y")
        queued = _queue_jobs(session, queue, owners * 4)

    def claim(_: int) -> int | None:
        with sessions() as session:
            job = claim_next(session, queue=queue)
            return None if job is None else job.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        claimed = list(pool.map(claim, range(16)))
    got = [job_id for job_id in claimed if job_id is not None]
    assert sorted(got) == sorted(queued)  # every job once, none twice
    with sessions() as session:
        attempts = session.query(Job.attempts).filter(Job.id.in_(queued)).all()
        assert {a for (a,) in attempts} == {1}


def test_claim_order_is_fair_share_on_sqlite() -> None:
    check_order(get_sessionmaker())


def test_concurrent_claims_take_each_job_once_on_sqlite() -> None:
    check_concurrent_claims(get_sessionmaker())


@pytest.fixture(scope="module")
def pg() -> Iterator[sessionmaker[Session]]:
    """A fresh PostgreSQL database with the real migrations (skipped only as
    tests/test_postgres.py is: unreachable and not required)."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("TUNEBOARD_TEST_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}: {exc}")
    name = f"tuneboard_fair_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    server = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
    engine = create_engine(f"{server}/{name}")
    try:
        with engine.begin() as conn:
            upgrade_head(conn)
            conn.execute(text("select 1"))
        yield sessionmaker(bind=engine, expire_on_commit=False)
    finally:
        engine.dispose()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_claim_order_is_fair_share_on_postgres(pg: sessionmaker[Session]) -> None:
    check_order(pg)


def test_concurrent_claims_take_each_job_once_on_postgres(pg: sessionmaker[Session]) -> None:
    check_concurrent_claims(pg)


def test_another_users_job_starts_second_not_last(
    client: TestClient, bob_client: TestClient, worker: Path, tiny_model_id: str, tmp_path: Path
) -> None:
    """Alice queues three jobs, then Bob one; the real worker starts Bob's second, not
    fourth."""
    path = write_csv(tmp_path / "fair.csv", labelled_texts(8))
    body = {"model": tiny_model_id, "strategy": "transfer_frozen", "device": "cpu"}
    params = {"params": {"epochs": 1}}
    alice_data, bob_data = upload_csv(client, path), upload_csv(bob_client, path)
    ids = []
    for who, dataset in [(client, alice_data)] * 3 + [(bob_client, bob_data)]:
        response = who.post("/api/v1/jobs", json={**body, **params, "dataset_id": dataset["id"]})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    def done() -> list[dict] | None:
        states = [
            (bob_client if i == ids[-1] else client).get(f"/api/v1/jobs/{i}").json() for i in ids
        ]
        return states if all(s["status"] in FINISHED for s in states) else None

    states = wait_for(done, timeout=180, what="the four jobs")
    assert all(s["status"] == "succeeded" for s in states), [s["error"] for s in states]
    by_start = sorted(states, key=lambda s: s["started_at"])
    # Second: Alice's first job may already run when Bob queues his. (First, when Alice ran
    # jobs earlier in the session: then her last start is later than Bob's none.)
    order = [s["id"] for s in by_start]
    assert ids[-1] in order[:2], [(s["id"], s["started_at"]) for s in by_start]
    assert "is next in fair-share order" in worker.read_text()


def test_non_admin_time_limit_is_capped(
    client: TestClient, admin_client: TestClient, tmp_path: Path
) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "t.csv", labelled_texts(6)))
    cap_minutes = int(get_settings().max_user_job_time_limit_seconds // 60)
    body = {
        "dataset_id": dataset["id"],
        "model": "minilm-l6",
        "strategy": "transfer_frozen",
        "params": {"time_limit_minutes": cap_minutes + 60},
    }
    refused = client.post("/api/v1/jobs", json=body)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert "TUNEBOARD_MAX_USER_JOB_TIME_LIMIT_SECONDS" in detail and str(cap_minutes) in detail
    # Up to the cap is fine; an admin may ask for more (up to the server's maximum).
    allowed = {**body, "params": {"time_limit_minutes": cap_minutes}}
    for who, payload in ((client, allowed), (admin_client, body)):
        response = who.post("/api/v1/jobs", json=payload)
        assert response.status_code == 201, response.text
        assert who.post(f"/api/v1/jobs/{response.json()['id']}/cancel").status_code == 200
