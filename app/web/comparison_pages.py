"""Comparison pages: the list, and one comparison side by side with overlaid curves."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.comparisons import service as comparisons
from app.web.deps import ComparisonDep, SessionDep
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/comparisons", response_class=HTMLResponse)
def comparison_list(request: Request, session: SessionDep) -> Response:
    items = [(c, comparisons.judge(c)) for c in comparisons.list_comparisons(session, limit=100)]
    return render(request, "comparisons/list.html", {"items": items})


@router.get("/comparisons/{comparison_id}", response_class=HTMLResponse)
def comparison_detail(request: Request, comparison: ComparisonDep) -> Response:
    context = {"comparison": comparison, "verdict": comparisons.judge(comparison)}
    return render(request, "comparisons/detail.html", context)


@router.get("/comparisons/{comparison_id}/table", response_class=HTMLResponse)
def comparison_table(request: Request, comparison: ComparisonDep) -> Response:
    context = {"comparison": comparison, "verdict": comparisons.judge(comparison)}
    return render(request, "comparisons/detail.html", context, block="table")
