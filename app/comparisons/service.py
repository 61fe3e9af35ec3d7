"""Creating comparisons and judging them: the winner by the chosen test metric, and the
cheapest run within one point of it — often the answer people actually want."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.ownership import owned
from app.comparisons.models import Comparison, ComparisonCreate, ComparisonOut, ComparisonRow
from app.config import Settings
from app.jobs.models import Job, JobOut, JobStatus
from app.jobs.params import resolve_params
from app.jobs.service import admit, send
from app.workers.service import queue_for

ONE_POINT = 0.01


def create_comparison(
    session: Session, *, payload: ComparisonCreate, settings: Settings, owner: User
) -> Comparison:
    admit(
        session,
        settings,
        dataset_id=payload.dataset_id,
        model=payload.model,
        strategies=list(payload.strategies),
        params=payload.params,
        owner=owner,
    )
    params = payload.params.model_dump()
    queue = queue_for(session, payload.device)
    comparison = Comparison(
        owner_id=owner.id,
        dataset_id=payload.dataset_id,
        model=payload.model,
        metric=payload.metric,
        params=params,
    )
    # Same dataset, same seed, hence the same split: only the strategy differs.
    comparison.jobs = [
        Job(
            owner_id=owner.id,
            dataset_id=payload.dataset_id,
            model=payload.model,
            strategy=strategy,
            device=payload.device,
            queue=queue,
            params=resolve_params(params, strategy),
        )
        for strategy in payload.strategies
    ]
    session.add(comparison)
    session.commit()  # every job row exists before any message is sent
    for job in comparison.jobs:
        send(job)
    return comparison


def list_comparisons(session: Session, user: User, *, limit: int = 50) -> list[Comparison]:
    query = select(Comparison).order_by(Comparison.id.desc()).limit(limit)
    return list(session.scalars(owned(query, Comparison, user)))


def judge(comparison: Comparison) -> ComparisonOut:
    key = f"test_{comparison.metric}"
    rows = []
    for job in comparison.jobs:
        r = job.results or {}
        rows.append(
            ComparisonRow(
                job=JobOut.model_validate(job),
                metric=r.get(key),
                wall_seconds=r.get("wall_seconds"),
                examples_per_second=r.get("train_examples_per_second"),
                trainable_params=r.get("trainable_params"),
                peak_memory_bytes=r.get("peak_memory_bytes"),
            )
        )
    done = [row for row in rows if row.job.status == JobStatus.succeeded and row.metric is not None]
    winner = cheapest = None
    summary = None
    if done:
        winner = max(done, key=lambda row: row.metric or 0.0)
        close = [row for row in done if (row.metric or 0.0) >= (winner.metric or 0.0) - ONE_POINT]
        cheapest = min(close, key=lambda row: row.wall_seconds or float("inf"))
        summary = _summary(comparison.metric, winner, cheapest)
    return ComparisonOut(
        id=comparison.id,
        created_at=comparison.created_at,
        dataset_id=comparison.dataset_id,
        model=comparison.model,
        metric=comparison.metric,  # type: ignore[arg-type]
        job_ids=[job.id for job in comparison.jobs],
        finished=all(job.status.finished for job in comparison.jobs),
        rows=rows,
        winner_job_id=winner.job.id if winner else None,
        cheapest_job_id=cheapest.job.id if cheapest else None,
        summary=summary,
    )


def _summary(metric: str, winner: ComparisonRow, cheapest: ComparisonRow) -> str:
    name = "macro-F1" if metric == "macro_f1" else "accuracy"
    best = f"{winner.job.strategy.label} scored best ({name} {100 * (winner.metric or 0):.1f}%)"
    if cheapest.job.id == winner.job.id:
        return best + " and was also the cheapest run within one point."
    ratio = (winner.wall_seconds or 0) / max(cheapest.wall_seconds or 1e-9, 1e-9)
    return (
        f"{best}; {cheapest.job.strategy.label} came within one point "
        f"({100 * (cheapest.metric or 0):.1f}%) at {ratio:.1f}× less wall time."
    )
