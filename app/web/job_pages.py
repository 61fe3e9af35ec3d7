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
from app.jobs.strategies import CONCRETE, Strategy, default_strategy
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import JobDep, SessionDep, SettingsDep
from app.web.errors import DOMAIN_ERRORS, error_body
from app.web.sample_answers import before_and_after
from app.web.templating import render
from app.workers import service as workers
from worker.training.tasks import TASKS, get_task
from worker.training.tasks.base import SHARES

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)


# What the form calls each group of models in its select (catalog.ModelEntry.modality).
MODEL_GROUPS = {
    "text": "Text models",
    "image": "Image models",
    "generation": "Language models (generation)",
}


def _form_context(session: Session, settings: Settings, user: User, **extra: Any) -> dict[str, Any]:
    """The form as it first shows for the chosen dataset (the one asked for, else the
    first): only its kind of models, its task's strategies and settings. job_form.js keeps
    it so as the dataset changes, from the per-task maps here."""
    ready = datasets.list_datasets(session, user, ready_only=True)
    values = extra.get("values", {})
    chosen = next((d for d in ready if str(d.id) == str(values.get("dataset_id"))), None)
    chosen = chosen or (ready[0] if ready else None)
    task = chosen.task if chosen else "classification"
    # Several devices are offered only where a live worker could run them; CPU processes
    # (gloo) are for trying data parallelism, so the form says when that is all there is.
    gpu_slots = workers.most_devices(session, workers.GPU_QUEUE)
    most_slots = max(gpu_slots, workers.most_devices(session, workers.CPU_QUEUE))
    fields = [f for f in FORM_FIELDS if f.name != "devices" or most_slots > 1]
    return {
        "datasets": ready,
        "kinds": {d.id: catalog.model_kind(d.modality, d.task) for d in ready},
        "chosen_task": task,
        "chosen_kind": catalog.model_kind(chosen.modality, task) if chosen else None,
        "models": catalog.list_models(settings),
        "model_groups": MODEL_GROUPS,
        "strategies": list(Strategy),
        "concrete": CONCRETE,
        # {task: {strategy: why it does not apply}} and {task: the preselected strategy}
        "not_offered": {name: t.not_offered for name, t in TASKS.items() if t.not_offered},
        "default_strategies": {name: default_strategy(name).value for name in TASKS},
        "devices": list(Device),
        "form_fields": fields,
        "most_devices": most_slots,
        "largest_is_cpu": gpu_slots < most_slots,
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
            kind = catalog.model_kind(dataset.modality, dataset.task)
            entry = catalog.resolve(model, settings, modality=kind)
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


def curve_charts(curves: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The task's validation curves as charts: shares (accuracy, F1, ROUGE-L) share one,
    the rest (errors, perplexity) another, so a perplexity in the thousands does not
    flatten a ROUGE-L below one."""
    groups: dict[bool, list[list[str]]] = {}
    for key, label in curves:
        groups.setdefault(key in SHARES, []).append([f"val_{key}", label])
    charts = []
    for n, series in enumerate(groups.values()):
        title = f"Validation {series[0][1]}" if len(groups) > 1 else "Validation quality"
        charts.append(
            {"key": "quality" if n == 0 else f"quality-{n}", "title": title, "series": series}
        )
    return charts


def _job_context(session: Session, job: Any, settings: Settings) -> dict[str, Any]:
    task = get_task(job.dataset.task)
    context = {
        "job": job,
        "task": task,
        "headline": task.headline(job.params),
        "curve_charts": curve_charts(task.curves(job.params)),
        "result_figures": [(f"test_{key}", f"test {label}") for key, label in task.scores],
        "shares": SHARES,
        "logs": jobs.log_tail(session, job.id),
        "overfitting": overfitting.detect(jobs.metric_series(session, job.id)),
        "sentence_export": job.export_ready
        and artifacts.is_sentence_transformers(settings, job.id),
    }
    if task.name == "generation":
        context["panel"] = before_and_after(artifacts.sample_answers(settings, job.id))
    return context


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
