"""The home page: recent jobs and datasets, and where a first-time user starts."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from app.comparisons import service as comparisons
from app.datasets import samples
from app.datasets import service as datasets
from app.jobs import service as jobs
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import SessionDep
from app.web.templating import render
from app.workers import service as workers

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, user: UserDep) -> Response:
    return render(
        request,
        "home.html",
        {
            "jobs": jobs.list_jobs(session, user, limit=10),
            "datasets": datasets.list_datasets(session, user)[:5],
            "comparisons": comparisons.list_comparisons(session, user, limit=5),
            "fleet": workers.fleet(session, viewer=user),
            "samples": samples.list_samples(),
        },
    )


@router.get("/workers/fragment", response_class=HTMLResponse)
def fleet_fragment(request: Request, session: SessionDep, user: UserDep) -> Response:
    """The workers card, refreshed by the home page every few seconds."""
    fleet = workers.fleet(session, viewer=user)
    return render(request, "home.html", {"fleet": fleet}, block="fleet")
