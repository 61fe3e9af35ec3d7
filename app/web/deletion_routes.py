"""Deleting datasets, jobs, comparisons and predictions: `DELETE /api/v1/…` for scripts and
the CLI, and for the pages a confirmation page (GET …/delete) whose form posts back to the
same address. What each deletion takes with it, and how running jobs are handled, is
app/deletion.py's; these routes only find the object (another user's is a 404) and answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from app import deletion
from app.web.auth import check_csrf, current_user
from app.web.deps import ComparisonDep, DatasetDep, JobDep, PredictionDep, SessionDep, SettingsDep
from app.web.templating import filesize, render

SIGNED_IN = [Depends(current_user), Depends(check_csrf)]
api = APIRouter(prefix="/api/v1", tags=["api"], dependencies=SIGNED_IN)
pages = APIRouter(include_in_schema=False, dependencies=SIGNED_IN)
router = APIRouter()


@api.delete("/datasets/{dataset_id}", status_code=204)
def delete_dataset(dataset: DatasetDep, session: SessionDep, settings: SettingsDep) -> Response:
    """The dataset with its jobs (exports, checkpoints), comparisons and predictions; 409
    while one of its jobs is running (that job is asked to stop: try again shortly)."""
    deletion.carry_out(session, settings, deletion.plan_dataset(session, dataset))
    return Response(status_code=204)


@api.delete("/jobs/{job_id}", status_code=204)
def delete_job(job: JobDep, session: SessionDep, settings: SettingsDep) -> Response:
    """The job with its files, metrics and predictions; 409 while it is running (it is asked
    to stop: try again shortly)."""
    deletion.carry_out(session, settings, deletion.plan_job(session, job))
    return Response(status_code=204)


@api.delete("/comparisons/{comparison_id}", status_code=204)
def delete_comparison(
    comparison: ComparisonDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """The comparison and its jobs; the dataset stays. 409 while one of them is running."""
    deletion.carry_out(session, settings, deletion.plan_comparison(session, comparison))
    return Response(status_code=204)


@api.delete("/predictions/{prediction_id}", status_code=204)
def delete_prediction(
    prediction: PredictionDep, session: SessionDep, settings: SettingsDep
) -> Response:
    deletion.carry_out(session, settings, deletion.plan_prediction(prediction))
    return Response(status_code=204)


def _confirm(
    request: Request,
    *,
    name: str,
    summary: str,
    action: str,
    back: str,
    error: str | None = None,
) -> Response:
    context = {"name": name, "summary": summary, "action": action, "back": back, "error": error}
    return render(request, "deletion/confirm.html", context, status=409 if error else 200)


def _page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    *,
    removal: deletion.Removal,
    name: str,
    subject: str,
    back: str,
    done: str,
) -> Response:
    """GET: the confirmation. POST: delete, then the list; or the confirmation again with
    the reason nothing was deleted (409)."""
    action = request.url.path
    summary = removal.summary(subject)
    if request.method == "GET":
        return _confirm(request, name=name, summary=summary, action=action, back=back)
    try:
        deletion.carry_out(session, settings, removal)
    except deletion.DeletionBlocked as exc:
        return _confirm(
            request, name=name, summary=summary, action=action, back=back, error=str(exc)
        )
    return RedirectResponse(done, status_code=303)


@pages.api_route("/datasets/{dataset_id}/delete", methods=["GET", "POST"])
def dataset_page(
    request: Request, dataset: DatasetDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return _page(
        request,
        session,
        settings,
        removal=deletion.plan_dataset(session, dataset),
        name=f"dataset “{dataset.name}”",
        subject=f"this dataset ({filesize(dataset.size_bytes)} of your storage)",
        back=f"/datasets/{dataset.id}",
        done="/datasets",
    )


@pages.api_route("/jobs/{job_id}/delete", methods=["GET", "POST"])
def job_page(request: Request, job: JobDep, session: SessionDep, settings: SettingsDep) -> Response:
    return _page(
        request,
        session,
        settings,
        removal=deletion.plan_job(session, job),
        name=f"job {job.id}",
        subject="this job with its checkpoints, exported model, metrics and log",
        back=f"/jobs/{job.id}",
        done="/jobs",
    )


@pages.api_route("/comparisons/{comparison_id}/delete", methods=["GET", "POST"])
def comparison_page(
    request: Request, comparison: ComparisonDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return _page(
        request,
        session,
        settings,
        removal=deletion.plan_comparison(session, comparison),
        name=f"comparison {comparison.id}",
        subject="this comparison (the dataset stays)",
        back=f"/comparisons/{comparison.id}",
        done="/comparisons",
    )


router.include_router(api)
router.include_router(pages)
