"""The JSON API under /api/v1: everything the pages do, for scripts and tests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import FileResponse

from app import catalog
from app.comparisons import service as comparisons
from app.comparisons.models import ComparisonCreate, ComparisonOut
from app.datasets import image_datasets, samples
from app.datasets import service as datasets
from app.datasets.folders import dataset_folder
from app.datasets.models import ColumnsUpdate, DatasetOut, Modality
from app.jobs import artifacts, overfitting
from app.jobs import service as jobs
from app.jobs.models import Device, JobCreate, JobOut, MetricSeries
from app.jobs.recommend import recommend_for
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import (
    MAX_ID,
    ComparisonDep,
    DatasetDep,
    JobDep,
    QueryDatasetDep,
    SessionDep,
    SettingsDep,
)
from app.web.exports import export_response
from app.workers import service as workers
from app.workers.models import Fleet

router = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    dependencies=[Depends(current_user), Depends(check_csrf)],  # every route: signed in
)

# A dataset's stored images never change, so browsers may keep their thumbnails.
IMMUTABLE = {"Cache-Control": "private, max-age=86400, immutable"}


# Uploads (POST /datasets, POST /datasets/samples/{id}) are app/web/dataset_uploads.py.


@router.get("/datasets", response_model=list[DatasetOut])
def list_datasets(session: SessionDep, user: UserDep) -> list[DatasetOut]:
    return [DatasetOut.model_validate(d) for d in datasets.list_datasets(session, user)]


@router.get("/datasets/samples")
def list_samples() -> list[dict[str, str]]:
    """The sample datasets anyone can create with one call, offline."""
    return [s.to_dict() for s in samples.list_samples()]


@router.get("/datasets/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset: DatasetDep) -> DatasetOut:
    return DatasetOut.model_validate(dataset)


@router.get("/datasets/{dataset_id}/images/{number}/thumbnail", response_class=FileResponse)
def image_thumbnail(
    dataset: DatasetDep, number: Annotated[int, Path(ge=0, le=MAX_ID)], settings: SettingsDep
) -> FileResponse:
    """A small WebP of image `number` (its place in the dataset's manifest)."""
    path = (
        image_datasets.thumbnail(dataset_folder(settings, dataset.id), number)
        if dataset.modality == Modality.image and dataset.ready
        else None
    )
    if path is None:
        raise HTTPException(404, "no such image in this dataset")
    return FileResponse(path, media_type="image/webp", headers=IMMUTABLE)


@router.put("/datasets/{dataset_id}/columns", response_model=DatasetOut)
def change_columns(
    dataset: DatasetDep, body: ColumnsUpdate, session: SessionDep, settings: SettingsDep
) -> DatasetOut:
    """Another column or task choice, checked at once: a wrong one is a 422 and the previous
    choice stays. Generation: text_column is the prompt column, label_column the response
    column (a chat file: "messages" and ""), and system_prompt may change too; it comes
    back `checking` while a worker counts its tokens again (GET it until `ready`)."""
    datasets.change_columns(
        session,
        dataset,
        settings=settings,
        text=body.text_column,
        label=body.label_column,
        text_pair=body.text_pair_column,
        task=body.task,
        label_separator=body.label_separator,
        label_columns=body.label_columns,
        system_prompt=body.system_prompt,
    )
    return DatasetOut.model_validate(dataset)


@router.get("/workers", response_model=Fleet)
def list_workers(session: SessionDep, user: UserDep) -> Fleet:
    """Live workers (heard from within three heartbeats), their queues and devices, their
    device slots and the running job on each busy one, and the number of queued jobs on each
    queue. Hostnames and process ids are shown to admins only, job ids to those who may see
    the job."""
    return workers.fleet(session, viewer=user)


@router.get("/models")
def list_models(settings: SettingsDep, user: UserDep) -> list[dict[str, object]]:
    """The catalogue. Where a model lies on the server (`path`) is shown to admins only."""
    return [m.to_dict(admin=user.is_admin) for m in catalog.list_models(settings)]


@router.post("/jobs", status_code=201, response_model=JobOut)
def create_job(
    body: JobCreate, session: SessionDep, settings: SettingsDep, user: UserDep
) -> JobOut:
    job = jobs.create_job(session, payload=body, settings=settings, owner=user)
    return JobOut.model_validate(job)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(session: SessionDep, user: UserDep) -> list[JobOut]:
    return [JobOut.model_validate(j) for j in jobs.list_jobs(session, user)]


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job: JobDep) -> JobOut:
    return JobOut.model_validate(job)


@router.get("/jobs/{job_id}/metrics", response_model=MetricSeries)
def get_metrics(job: JobDep, session: SessionDep) -> MetricSeries:
    series = jobs.metric_series(session, job.id)
    warning = overfitting.detect(series)
    return MetricSeries(
        job_id=job.id,
        status=job.status,
        series=series,
        overfitting=warning.__dict__ if warning else None,
    )


@router.get("/jobs/{job_id}/misclassified")
def get_misclassified(
    job: JobDep, settings: SettingsDep, true: str, predicted: str
) -> list[dict[str, object]]:
    """Validation examples of one confusion-matrix cell (true label, predicted label)."""
    return artifacts.misclassified(settings, job.id, true=true, predicted=predicted)


@router.get("/jobs/{job_id}/logs")
def get_logs(job: JobDep, session: SessionDep) -> list[dict[str, str]]:
    return [
        {"at": line.created_at.isoformat(), "message": line.message}
        for line in jobs.log_tail(session, job.id, limit=200)
    ]


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job: JobDep, session: SessionDep) -> JobOut:
    return JobOut.model_validate(jobs.request_cancel(session, job))


@router.post("/comparisons", status_code=201, response_model=ComparisonOut)
def create_comparison(
    body: ComparisonCreate, session: SessionDep, settings: SettingsDep, user: UserDep
) -> ComparisonOut:
    return comparisons.judge(
        comparisons.create_comparison(session, payload=body, settings=settings, owner=user)
    )


@router.get("/comparisons", response_model=list[ComparisonOut])
def list_comparisons(session: SessionDep, user: UserDep) -> list[ComparisonOut]:
    return [comparisons.judge(c) for c in comparisons.list_comparisons(session, user)]


@router.get("/comparisons/{comparison_id}", response_model=ComparisonOut)
def get_comparison(comparison: ComparisonDep) -> ComparisonOut:
    return comparisons.judge(comparison)


@router.get("/recommendation")
def get_recommendation(
    dataset: QueryDatasetDep, model: str, settings: SettingsDep, device: Device = Device.auto
) -> dict[str, object]:
    """What Auto would pick before its quick probe (the job page shows the final pick)."""
    choice = recommend_for(dataset, catalog.resolve(model, settings), device)
    return {"strategy": choice.strategy, "reason": choice.reason, "may_probe": choice.wants_probe}


@router.get("/jobs/{job_id}/export", response_class=FileResponse)
def download_export(job: JobDep, settings: SettingsDep) -> FileResponse:
    return export_response(job, settings)
