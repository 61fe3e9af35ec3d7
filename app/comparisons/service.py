"""Creating comparisons and judging them: the winner by the chosen test score (the task's
headline unless another is named), and the cheapest run within one point of it (or, for an
error in the target's units, within 1 %) — often the answer people actually want."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.ownership import owned
from app.comparisons.models import Comparison, ComparisonCreate, ComparisonOut, ComparisonRow
from app.config import Settings
from app.datasets.models import Dataset
from app.jobs.models import Job, JobOut, JobStatus
from app.jobs.params import resolve_params
from app.jobs.service import InvalidJob, admit, devices_for, send
from app.jobs.strategies import Strategy, offered
from app.workers.service import queue_for
from worker.training.tasks import get_task
from worker.training.tasks.base import SHARES, higher_is_better

ONE_POINT = 0.01  # of a share (accuracy, F1, R²): one percentage point
ONE_PERCENT = 1.01  # of an error in the target's units (MAE, RMSE)


def create_comparison(
    session: Session, *, payload: ComparisonCreate, settings: Settings, owner: User
) -> Comparison:
    strategies = list(payload.strategies)
    dataset = session.get(Dataset, payload.dataset_id)
    if "strategies" not in payload.model_fields_set and dataset is not None:
        # Left to the default, "every strategy" means every one the task offers; named
        # ones that do not apply are refused by admit with the reason.
        strategies = [s for s in strategies if s in offered(dataset.task)]
    admit(
        session,
        settings,
        dataset_id=payload.dataset_id,
        model=payload.model,
        strategies=strategies,
        params=payload.params,
        owner=owner,
        device=payload.device,
    )
    params = payload.params.model_dump()
    assert dataset is not None  # admit found it
    task = get_task(dataset.task)
    metric = payload.metric or task.headline(params).key
    known = [key for key, _ in task.scores]
    if metric not in known:
        raise InvalidJob(
            f"metric '{metric}' is not a score of {task.name}; choose one of {', '.join(known)}"
        )
    queue = queue_for(session, payload.device)
    comparison = Comparison(
        owner_id=owner.id,
        dataset_id=payload.dataset_id,
        model=payload.model,
        metric=metric,
        params=params,
    )
    # Same dataset, same seed, hence the same split: only the strategy differs.
    comparison.jobs = [
        _job(payload, owner, strategy, queue, resolve_params(params, strategy, dataset.task))
        for strategy in strategies
    ]
    session.add(comparison)
    session.commit()  # every job row exists before any message is sent
    for job in comparison.jobs:
        send(job)
    return comparison


def _job(
    payload: ComparisonCreate, owner: User, strategy: Strategy, queue: str, params: dict[str, Any]
) -> Job:
    # Frozen features have no steps to split, so among stepping jobs asking for several
    # devices theirs holds one (and says so in its settings).
    devices = devices_for(strategy, params)
    return Job(
        owner_id=owner.id,
        dataset_id=payload.dataset_id,
        model=payload.model,
        strategy=strategy,
        device=payload.device,
        queue=queue,
        params={**params, "devices": devices},
        devices=devices,
    )


def list_comparisons(session: Session, user: User, *, limit: int = 50) -> list[Comparison]:
    query = select(Comparison).order_by(Comparison.id.desc()).limit(limit)
    return list(session.scalars(owned(query, Comparison, user)))


def judge(comparison: Comparison) -> ComparisonOut:
    key = f"test_{comparison.metric}"
    names = [name for name, _ in get_task(comparison.dataset.task).scores]
    rows = []
    for job in comparison.jobs:
        r = job.results or {}
        rows.append(
            ComparisonRow(
                job=JobOut.model_validate(job),
                metric=r.get(key),
                scores={name: r.get(f"test_{name}") for name in names},
                wall_seconds=r.get("wall_seconds"),
                examples_per_second=r.get("train_examples_per_second"),
                tokens_per_second=r.get("train_tokens_per_second"),
                trainable_params=r.get("trainable_params"),
                peak_memory_bytes=r.get("peak_memory_bytes"),
            )
        )
    done = [row for row in rows if row.job.status == JobStatus.succeeded and row.metric is not None]
    winner = cheapest = None
    summary = None
    if done:
        higher = higher_is_better(comparison.metric)
        sign = 1.0 if higher else -1.0
        winner = max(done, key=lambda row: sign * (row.metric or 0.0))
        best = winner.metric or 0.0
        close = [row for row in done if _close(comparison.metric, row.metric or 0.0, best)]
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


def _close(metric: str, value: float, best: float) -> bool:
    """Within one point of the best score (a share, R², ρ), or within 1 % of the best
    error in the target's units."""
    if higher_is_better(metric):
        return value >= best - ONE_POINT
    if metric in SHARES:  # Hamming loss
        return value <= best + ONE_POINT
    return value <= best * ONE_PERCENT


def shown(metric: str, value: float | None) -> str:
    """A score as people read it: shares as percents, errors in the target's units."""
    if value is None:
        return "—"
    return f"{100 * value:.1f}%" if metric in SHARES else f"{value:.4g}"


def reach(metric: str) -> str:
    """How close counts as as good (_close): a point of a score, 1 % of an error."""
    return "one point" if metric in SHARES or higher_is_better(metric) else "1 %"


def _summary(metric: str, winner: ComparisonRow, cheapest: ComparisonRow) -> str:
    name = metric.replace("_", " ")
    best = f"{winner.job.strategy.label} scored best ({name} {shown(metric, winner.metric)})"
    if cheapest.job.id == winner.job.id:
        return best + f" and was also the cheapest run within {reach(metric)}."
    ratio = (winner.wall_seconds or 0) / max(cheapest.wall_seconds or 1e-9, 1e-9)
    return (
        f"{best}; {cheapest.job.strategy.label} came within {reach(metric)} "
        f"({shown(metric, cheapest.metric)}) at {ratio:.1f}× less wall time."
    )
