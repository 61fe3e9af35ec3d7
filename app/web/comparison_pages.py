"""Comparison pages: the list, and one comparison side by side with overlaid curves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from app.comparisons import service as comparisons
from app.comparisons.models import Comparison
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import ComparisonDep, SessionDep
from app.web.templating import render
from worker.training.tasks import get_task
from worker.training.tasks.base import higher_is_better

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)


@router.get("/comparisons", response_class=HTMLResponse)
def comparison_list(request: Request, session: SessionDep, user: UserDep) -> Response:
    mine = comparisons.list_comparisons(session, user, limit=100)
    items = [(c, comparisons.judge(c)) for c in mine]
    return render(request, "comparisons/list.html", {"items": items})


def _context(comparison: Comparison) -> dict[str, Any]:
    return {
        "comparison": comparison,
        "verdict": comparisons.judge(comparison),
        "task": get_task(comparison.dataset.task),
        "shown": comparisons.shown,
        "reach": comparisons.reach,
        "higher_is_better": higher_is_better,
    }


@router.get("/comparisons/{comparison_id}", response_class=HTMLResponse)
def comparison_detail(request: Request, comparison: ComparisonDep) -> Response:
    return render(request, "comparisons/detail.html", _context(comparison))


@router.get("/comparisons/{comparison_id}/table", response_class=HTMLResponse)
def comparison_table(request: Request, comparison: ComparisonDep) -> Response:
    return render(request, "comparisons/detail.html", _context(comparison), block="table")
