"""Dataset pages: the list with the upload form, one dataset, and its column form."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.datasets import service as datasets
from app.datasets.parsing import ParseError
from app.datasets.validation import DatasetInvalid
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import DatasetDep, SessionDep, SettingsDep
from app.web.templating import render

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)


@router.get("/datasets", response_class=HTMLResponse)
def dataset_list(
    request: Request, session: SessionDep, settings: SettingsDep, user: UserDep
) -> Response:
    return render(
        request,
        "datasets/list.html",
        {
            "datasets": datasets.list_datasets(session, user),
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
