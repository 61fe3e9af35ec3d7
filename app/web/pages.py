"""HTML pages. Each page template also holds its htmx fragments as named blocks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app import catalog
from app.datasets import service as datasets
from app.datasets.parsing import ParseError
from app.datasets.service import DatasetInvalid
from app.jobs import service as jobs
from app.jobs.models import STRATEGY_HELP, Device, JobCreate, Strategy
from app.web.deps import DatasetDep, JobDep, SessionDep, SettingsDep
from app.web.errors import DOMAIN_ERRORS, error_body
from app.web.templating import templates

router = APIRouter(include_in_schema=False)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    block: str | None = None,
) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status, block_name=block)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep) -> Response:
    return render(
        request,
        "home.html",
        {
            "jobs": jobs.list_jobs(session, limit=10),
            "datasets": datasets.list_datasets(session)[:5],
        },
    )


@router.get("/datasets", response_class=HTMLResponse)
def dataset_list(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    return render(
        request,
        "datasets/list.html",
        {
            "datasets": datasets.list_datasets(session),
            "max_upload_mib": settings.max_upload_bytes // (1024 * 1024),
        },
    )


def _dataset_context(dataset: Any, error: str | None = None) -> dict[str, Any]:
    counts = dataset.report.get("class_counts", {})
    return {
        "dataset": dataset,
        "error": error,
        "class_counts": counts,
        "max_count": max(counts.values(), default=1),
    }


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_detail(request: Request, dataset: DatasetDep) -> Response:
    return render(request, "datasets/detail.html", _dataset_context(dataset))


@router.post("/datasets/{dataset_id}/columns", response_class=HTMLResponse)
def dataset_columns(
    request: Request,
    dataset: DatasetDep,
    session: SessionDep,
    settings: SettingsDep,
    text_column: Annotated[str, Form()],
    label_column: Annotated[str, Form()],
    text_pair_column: Annotated[str, Form()] = "",
) -> Response:
    try:
        datasets.change_columns(
            session,
            dataset,
            settings=settings,
            text=text_column,
            label=label_column,
            text_pair=text_pair_column or None,
        )
    except (ParseError, DatasetInvalid) as exc:
        session.refresh(dataset)
        return render(
            request,
            "datasets/detail.html",
            _dataset_context(dataset, str(exc)),
            status=422,
            block="summary",
        )
    return render(request, "datasets/detail.html", _dataset_context(dataset), block="summary")


def _form_context(session: Any, settings: Any, **extra: Any) -> dict[str, Any]:
    return {
        "datasets": datasets.list_datasets(session),
        "models": catalog.list_models(settings),
        "strategies": list(Strategy),
        "strategy_help": STRATEGY_HELP,
        "devices": list(Device),
        "values": {},
        "errors": [],
        **extra,
    }


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job(
    request: Request, session: SessionDep, settings: SettingsDep, dataset_id: int | None = None
) -> Response:
    values = {"dataset_id": dataset_id} if dataset_id else {}
    return render(request, "jobs/new.html", _form_context(session, settings, values=values))


@router.post("/jobs", response_class=HTMLResponse)
async def submit_job(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    params = {
        k: values[k]
        for k in ("epochs", "batch_size", "learning_rate", "max_length", "seed")
        if values.get(k, "").strip()
    }
    try:
        payload = JobCreate.model_validate(
            {
                "dataset_id": values.get("dataset_id") or None,
                "model": values.get("model", ""),
                "strategy": values.get("strategy", ""),
                "device": values.get("device") or "auto",
                "params": params,
            }
        )
        job = jobs.create_job(session, payload=payload, settings=settings)
    except ValidationError as exc:
        messages = [f"{'.'.join(str(p) for p in e['loc'][-1:])}: {e['msg']}" for e in exc.errors()]
        return render(
            request,
            "jobs/new.html",
            _form_context(session, settings, values=values, errors=messages),
            status=422,
        )
    except DOMAIN_ERRORS as exc:
        status, body = error_body(exc)
        return render(
            request,
            "jobs/new.html",
            _form_context(session, settings, values=values, errors=[str(body["detail"])]),
            status=status,
        )
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.get("/jobs", response_class=HTMLResponse)
def job_list(request: Request, session: SessionDep) -> Response:
    return render(request, "jobs/list.html", {"jobs": jobs.list_jobs(session, limit=200)})


def _job_context(session: Any, job: Any) -> dict[str, Any]:
    return {"job": job, "logs": jobs.log_tail(session, job.id)}


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_detail(request: Request, job: JobDep, session: SessionDep) -> Response:
    return render(request, "jobs/detail.html", _job_context(session, job))


@router.get("/jobs/{job_id}/status", response_class=HTMLResponse)
def job_status(request: Request, job: JobDep, session: SessionDep) -> Response:
    return render(request, "jobs/detail.html", _job_context(session, job), block="status")


@router.get("/jobs/{job_id}/outcome", response_class=HTMLResponse)
def job_outcome(request: Request, job: JobDep, session: SessionDep) -> Response:
    return render(request, "jobs/detail.html", _job_context(session, job), block="outcome")


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def job_cancel(request: Request, job: JobDep, session: SessionDep) -> Response:
    if not job.status.finished:
        jobs.request_cancel(session, job)
    return render(request, "jobs/detail.html", _job_context(session, job), block="status")
