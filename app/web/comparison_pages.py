"""Comparison pages: the list, and one comparison side by side with overlaid curves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.comparisons import service as comparisons
from app.comparisons.models import Comparison
from app.jobs import service as jobs
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import ComparisonDep, SessionDep
from app.web.templating import render
from worker.training.tasks import Task, get_task
from worker.training.tasks.base import higher_is_better

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)


@router.get("/comparisons", response_class=HTMLResponse)
def comparison_list(request: Request, session: SessionDep, user: UserDep) -> Response:
    mine = comparisons.list_comparisons(session, user, limit=100)
    items = [(c, comparisons.judge(c)) for c in mine]
    return render(request, "comparisons/list.html", {"items": items})


def _context(comparison: Comparison, session: Session) -> dict[str, Any]:
    task = get_task(comparison.dataset.task)
    verdict = comparisons.judge(comparison)
    return {
        "comparison": comparison,
        "verdict": verdict,
        "task": task,
        "others": [(k, label) for k, label in task.scores if k != comparison.metric],
        "tokens_shown": any(row.tokens_per_second is not None for row in verdict.rows),
        "overlay": overlay_choices(task, comparison, session),
        "shown": comparisons.shown,
        "reach": comparisons.reach,
        "higher_is_better": higher_is_better,
    }


def overlay_choices(task: Task, comparison: Comparison, session: Session) -> list[tuple[str, str]]:
    """The validation curves to overlay (loss aside, which is always offered): the task's
    curves, then its other scores, keeping once the runs have recorded points only those
    they record (generation scores its answers on the test set alone)."""
    choices = dict(task.curves(comparison.params))
    for key, label in task.scores:
        choices.setdefault(key, label)
    choices.pop("loss", None)
    recorded = jobs.recorded_metrics(session, [job.id for job in comparison.jobs])
    if recorded:
        choices = {k: label for k, label in choices.items() if f"val_{k}" in recorded}
    return list(choices.items())


@router.get("/comparisons/{comparison_id}", response_class=HTMLResponse)
def comparison_detail(request: Request, comparison: ComparisonDep, session: SessionDep) -> Response:
    return render(request, "comparisons/detail.html", _context(comparison, session))


@router.get("/comparisons/{comparison_id}/table", response_class=HTMLResponse)
def comparison_table(request: Request, comparison: ComparisonDep, session: SessionDep) -> Response:
    context = _context(comparison, session)
    return render(request, "comparisons/detail.html", context, block="table")
