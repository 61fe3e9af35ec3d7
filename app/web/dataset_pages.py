"""Dataset pages: the list with the upload form and the samples, one dataset, and its
column form."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.config import Settings
from app.datasets import samples
from app.datasets import service as datasets
from app.datasets.models import DatasetStatus
from app.datasets.parsing import ParseError
from app.datasets.task_labels import TASK_NAMES
from app.datasets.validation import DatasetInvalid
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import DatasetDep, SampleDep, SessionDep, SettingsDep
from app.web.errors import DOMAIN_ERRORS, error_body
from app.web.templating import render
from worker.training.tasks.multi_label import SEPARATORS

# The column form's task choices ("Multi-label — several labels per row") and separators
# ("": no separator, the cells are JSON lists; or one is detected when cells hold one).
TASK_CHOICES = {
    name: f"{name.replace('_', '-').capitalize()} — {what}" for name, what in TASK_NAMES.items()
}
SEPARATOR_CHOICES = {**{sep: sep for sep in SEPARATORS}, "": "JSON list"}

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)


def _list_context(
    session: Session, settings: Settings, user: User, error: str | None = None
) -> dict[str, Any]:
    return {
        "datasets": datasets.list_datasets(session, user),
        "max_upload_mib": settings.max_upload_bytes // (1024 * 1024),
        "samples": samples.list_samples(),
        "sample_error": error,
        "task_choices": TASK_CHOICES,  # the upload form's optional task
    }


@router.get("/datasets", response_class=HTMLResponse)
def dataset_list(
    request: Request, session: SessionDep, settings: SettingsDep, user: UserDep
) -> Response:
    return render(request, "datasets/list.html", _list_context(session, settings, user))


@router.post("/datasets/samples/{sample_id}", response_class=HTMLResponse)
def create_sample(
    request: Request,
    sample: SampleDep,
    session: SessionDep,
    settings: SettingsDep,
    user: UserDep,
) -> Response:
    """One click on a sample button: the dataset is made as an upload is, then shown. A
    refusal (the storage quota) is shown on the dataset list with the upload's status."""
    try:
        dataset = samples.create_sample(session, settings=settings, sample=sample, owner=user)
    except DOMAIN_ERRORS as exc:
        status, body = error_body(exc)
        context = _list_context(session, settings, user, str(body["detail"]))
        return render(request, "datasets/list.html", context, status=status)
    return RedirectResponse(f"/datasets/{dataset.id}", status_code=303)


def _dataset_context(dataset: Any, error: str | None = None) -> dict[str, Any]:
    counts = dataset.report.get("class_counts", {})
    return {
        "dataset": dataset,
        "error": error,
        "class_counts": counts,
        "max_count": max(counts.values(), default=1),
        "labels": dataset.report.get("labels", {}),
        "task_choices": TASK_CHOICES,
        "separator_choices": SEPARATOR_CHOICES,
    }


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_detail(request: Request, dataset: DatasetDep) -> Response:
    return render(request, "datasets/detail.html", _dataset_context(dataset))


@router.get("/datasets/{dataset_id}/state", response_class=HTMLResponse)
def dataset_state(request: Request, dataset: DatasetDep) -> Response:
    """What the page polls while the upload is checked: progress, then the report."""
    return render(request, "datasets/detail.html", _dataset_context(dataset), block="state")


@router.post("/datasets/{dataset_id}/columns", response_class=HTMLResponse)
def dataset_columns(
    request: Request,
    dataset: DatasetDep,
    session: SessionDep,
    settings: SettingsDep,
    text_column: Annotated[str, Form()],
    label_column: Annotated[str, Form()] = "",  # a chat file has none (FastAPI drops "")
    text_pair_column: Annotated[str, Form()] = "",
    task: Annotated[str, Form()] = "",
    label_separator: Annotated[str, Form()] = "",
    label_columns: Annotated[list[str] | None, Form()] = None,
    system_prompt: Annotated[str | None, Form()] = None,
) -> Response:
    """The column and task choice; "" keeps the task, or for the separator detects one (a
    multi-label file of JSON-list cells has none). A generation choice is checked again by
    a worker (its tokens are counted there): the whole page reloads to follow it."""
    try:
        datasets.change_columns(
            session,
            dataset,
            settings=settings,
            text=text_column,
            label=label_column,
            text_pair=text_pair_column or None,
            task=task or None,
            label_separator=label_separator or None,
            label_columns=[c for c in label_columns or [] if c] or None,
            system_prompt=system_prompt,
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
    if dataset.status == DatasetStatus.checking:
        return Response(headers={"HX-Refresh": "true"})
    return render(request, "datasets/detail.html", _dataset_context(dataset), block="summary")
