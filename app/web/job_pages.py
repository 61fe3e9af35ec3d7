"""Job pages: the new-job form (one job or a comparison), the job list and one job with its
polled fragments."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import catalog
from app.accounts.models import User
from app.comparisons import service as comparisons
from app.comparisons.models import ComparisonCreate
from app.config import Settings
from app.datasets import service as datasets
from app.jobs import artifacts, overfitting
from app.jobs import service as jobs
from app.jobs.models import Device, JobCreate
from app.jobs.params import FORM_FIELDS, LABELS
from app.jobs.recommend import recommend_for
from app.jobs.strategies import CONCRETE, Strategy
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import JobDep, SessionDep, SettingsDep
from app.web.errors import DOMAIN_ERRORS, error_body
from app.web.templating import render
from worker.training.tasks import get_task

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)


def _form_context(session: Session, settings: Settings, user: User, **extra: Any) -> dict[str, Any]:
    return {
        "datasets": datasets.list_datasets(session, user, ready_only=True),
        "models": catalog.list_models(settings),
        "strategies": list(Strategy),
        "concrete": CONCRETE,
        "devices": list(Device),
        "form_fields": FORM_FIELDS,
        "values": {},
        "compare": [],
        "errors": [],
        **extra,
    }


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: UserDep,
    dataset_id: int | None = None,
) -> Response:
    values = {"dataset_id": dataset_id} if dataset_id else {}
    return render(request, "jobs/new.html", _form_context(session, settings, user, values=values))


@router.get("/jobs/recommendation", response_class=HTMLResponse)
def recommendation(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: UserDep,
    dataset_id: int = 0,
    model: str = "",
    device: str = "auto",
) -> Response:
    """The form's "Auto would pick …" line, refreshed as the choices change."""
    dataset = datasets.get_dataset(session, dataset_id, user)
    choice, note = None, None
    if dataset is not None and device in Device.__members__:
        try:
            entry = catalog.resolve(model, settings, modality=dataset.modality)
            choice = recommend_for(dataset, entry, Device(device))
            if entry.lora_unavailable:
                note = f"LoRA is not available for {entry.title}: {entry.lora_unavailable}."
        except catalog.UnknownModel as exc:
            note = str(exc) if model else None
    context = {"choice": choice, "model_note": note}
    return render(request, "jobs/new.html", context, block="recommendation")


def _payload(values: dict[str, str], choice: dict[str, Any]) -> dict[str, Any]:
    # Empty fields fall back to the defaults; lists are typed comma-separated.
    params: dict[str, Any] = {}
    for f in FORM_FIELDS:
        text = values.get(f.name, "").strip()
        if text:
            params[f.name] = (
                [t.strip() for t in text.split(",") if t.strip()] if f.widget == "list" else text
            )
    return {
        "dataset_id": values.get("dataset_id") or None,
        "model": values.get("model", ""),
        "device": values.get("device") or "auto",
        "params": params,
        **choice,
    }


# What the form calls each field, so an error names what the person sees.
FIELD_LABELS = {
    "dataset_id": "Dataset", "model": "Model", "strategy": "Strategy", "device": "Device",
    **LABELS,
}  # fmt: skip


def _form_message(error: Any) -> str:
    field = str(error["loc"][-1]) if error["loc"] else ""
    if field == "strategies" and error["type"] == "too_short":
        return "Compare strategies: tick at least two strategies to compare."
    label = FIELD_LABELS.get(field, field.replace("_", " ").capitalize() or "Form")
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{label}: {message[:1].lower()}{message[1:]}."


@router.post("/jobs", response_class=HTMLResponse)
async def submit_job(
    request: Request, session: SessionDep, settings: SettingsDep, user: UserDep
) -> Response:
    """One job, or with the Compare button one job per ticked strategy as a comparison."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    compare = [v for v in form.getlist("compare_strategies") if isinstance(v, str)]
    try:
        if values.get("action") == "compare":
            request_body = ComparisonCreate.model_validate(
                _payload(values, {"strategies": compare})
            )
            group = comparisons.create_comparison(
                session, payload=request_body, settings=settings, owner=user
            )
            return RedirectResponse(f"/comparisons/{group.id}", status_code=303)
        payload = JobCreate.model_validate(
            _payload(values, {"strategy": values.get("strategy", "")})
        )
        job = jobs.create_job(session, payload=payload, settings=settings, owner=user)
    except ValidationError as exc:
        messages = [_form_message(e) for e in exc.errors()]
        context = _form_context(
            session, settings, user, values=values, compare=compare, errors=messages
        )
        return render(request, "jobs/new.html", context, status=422)
    except DOMAIN_ERRORS as exc:
        status, body = error_body(exc)
        context = _form_context(
            session, settings, user, values=values, compare=compare, errors=[str(body["detail"])]
        )
        return render(request, "jobs/new.html", context, status=status)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.get("/jobs", response_class=HTMLResponse)
def job_list(request: Request, session: SessionDep, user: UserDep) -> Response:
    return render(request, "jobs/list.html", {"jobs": jobs.list_jobs(session, user, limit=200)})


def _job_context(session: Session, job: Any, settings: Settings) -> dict[str, Any]:
    task = get_task(job.dataset.task)
    return {
        "job": job,
        "task": task,
        "headline": task.headline(job.params),
        "curves": [[f"val_{key}", label] for key, label in task.curves(job.params)],
        "result_figures": [(f"test_{key}", f"test {label}") for key, label in task.scores],
        "logs": jobs.log_tail(session, job.id),
        "overfitting": overfitting.detect(jobs.metric_series(session, job.id)),
        "sentence_export": job.export_ready
        and artifacts.is_sentence_transformers(settings, job.id),
    }


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_detail(
    request: Request, job: JobDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return render(request, "jobs/detail.html", _job_context(session, job, settings))


@router.get("/jobs/{job_id}/status", response_class=HTMLResponse)
def job_status(
    request: Request, job: JobDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return render(request, "jobs/detail.html", _job_context(session, job, settings), block="status")


@router.get("/jobs/{job_id}/outcome", response_class=HTMLResponse)
def job_outcome(
    request: Request, job: JobDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return render(
        request, "jobs/detail.html", _job_context(session, job, settings), block="outcome"
    )


@router.get("/jobs/{job_id}/misclassified", response_class=HTMLResponse)
def job_misclassified(
    request: Request, job: JobDep, settings: SettingsDep, true: str, predicted: str
) -> Response:
    rows = artifacts.misclassified(settings, job.id, true=true, predicted=predicted)
    # "true" is a Jinja literal, so the labels go in under other names.
    context = {"job": job, "rows": rows, "true_label": true, "predicted_label": predicted}
    return render(request, "jobs/misclassified.html", context)


@router.get("/jobs/{job_id}/label-mistakes", response_class=HTMLResponse)
def job_label_mistakes(
    request: Request,
    job: JobDep,
    settings: SettingsDep,
    label: str,
    kind: Literal["missed", "extra"],
) -> Response:
    rows = artifacts.label_mistakes(settings, job.id, label=label, kind=kind)
    context = {"job": job, "rows": rows, "label": label, "kind": kind}
    return render(request, "jobs/label_mistakes.html", context)


@router.get("/jobs/{job_id}/sentences", response_class=HTMLResponse)
def job_sentences(request: Request, job: JobDep, settings: SettingsDep) -> Response:
    rows = artifacts.tagged_sentences(settings, job.id)
    return render(request, "jobs/sentences.html", {"job": job, "rows": rows})


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def job_cancel(
    request: Request, job: JobDep, session: SessionDep, settings: SettingsDep
) -> Response:
    if not job.status.finished:
        jobs.request_cancel(session, job)
    context = _job_context(session, job, settings)
    return render(request, "jobs/detail.html", context, block="status")
