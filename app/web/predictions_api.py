"""The playground's JSON API: ask a finished job's model about one text or image (answered
within the request when the predict worker is quick enough), or about a batch file (a CSV to
download when done). The pages (playground_pages.py) use the same two `ask` functions.
Generation jobs are asked in generation_api.py; their batch files come here too."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Response, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from app.config import Settings
from app.datasets.uploads import StoredUpload, store_upload
from app.db import get_sessionmaker
from app.jobs.models import Job
from app.predictions import generation
from app.predictions import service as predictions
from app.predictions.models import Prediction, PredictionOut
from app.web.auth import check_csrf, current_user
from app.web.deps import JobDep, PredictionDep, SessionDep, SettingsDep
from worker.training.chat_request import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    MAX_NEW_TOKENS,
    MAX_TEMPERATURE,
    Sampling,
)

router = APIRouter(
    prefix="/api/v1",
    tags=["playground"],
    dependencies=[Depends(current_user), Depends(check_csrf)],
)


def _stored(upload: UploadFile, settings: Settings) -> StoredUpload:
    return store_upload(
        upload.file,
        filename=upload.filename or "upload",
        into=settings.uploads_dir,
        max_bytes=settings.max_upload_bytes,
    )


def ask_one(
    session: Session,
    settings: Settings,
    job: Job,
    *,
    text: str | None,
    text_pair: str | None,
    image: UploadFile | None,
) -> Prediction:
    """One text (and pair) or one image, whichever the job's model reads."""
    if image is not None and image.filename:
        stored = _stored(image, settings)
        try:
            return predictions.ask_image(session, settings, job, stored)
        finally:
            stored.discard()
    if text is None:
        raise predictions.PredictionRefused("send a text (field 'text') or an image ('image')")
    return predictions.ask_text(session, settings, job, text, text_pair)


def ask_batch(
    session: Session, settings: Settings, job: Job, file: UploadFile, sampling: Sampling
) -> Prediction:
    """A file of texts or a ZIP of images; for a generation job, a file of prompts answered
    with `sampling`."""
    if not file.filename:
        raise predictions.PredictionRefused(
            "choose a file of prompts"
            if predictions.is_generation(job)
            else "choose a file of texts or a ZIP of images"
        )
    stored = _stored(file, settings)
    try:
        if predictions.is_generation(job):
            return generation.ask_prompts(session, settings, job, stored, sampling)
        return predictions.ask_batch(session, settings, job, stored)
    finally:
        stored.discard()


def batch_sampling(
    max_new_tokens: Annotated[
        int, Form(ge=1, le=MAX_NEW_TOKENS, description="Generation jobs: the longest answer")
    ] = DEFAULT_MAX_NEW_TOKENS,
    temperature: Annotated[
        float,
        Form(ge=0, le=MAX_TEMPERATURE, description="Generation jobs: 0 is greedy decoding"),
    ] = DEFAULT_TEMPERATURE,
    top_p: Annotated[
        float, Form(gt=0, le=1, description="Generation jobs: nucleus sampling's share")
    ] = DEFAULT_TOP_P,
) -> Sampling:
    """How a generation job answers a batch file's prompts (other jobs ignore it)."""
    return Sampling(max_new_tokens, temperature, top_p)


@router.post("/jobs/{job_id}/predict", response_model=PredictionOut)
def predict(
    job: JobDep,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    text: Annotated[str | None, Form()] = None,
    text_pair: Annotated[str | None, Form()] = None,
    image: Annotated[UploadFile | None, File()] = None,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for the answer")] = 30,
) -> PredictionOut:
    """Class probabilities for one text or image: 200 with them, or 202 if the predict
    worker has not answered within `wait` seconds (poll GET /predictions/{id})."""
    prediction = ask_one(session, settings, job, text=text, text_pair=text_pair, image=image)
    answered = predictions.wait(get_sessionmaker(), prediction.id, timeout=wait)
    if not answered.finished:
        response.status_code = 202
    return PredictionOut.model_validate(answered)


@router.post("/jobs/{job_id}/predict-batch", status_code=202, response_model=PredictionOut)
def predict_batch(
    job: JobDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[
        UploadFile,
        File(
            description="Text models: CSV/TSV/JSONL/Parquet; image models: a ZIP; generation "
            'models: a table with a prompt column, or chat JSONL ({"messages": [...]} a line)'
        ),
    ],
    sampling: Annotated[Sampling, Depends(batch_sampling)],
) -> PredictionOut:
    """Queue predictions for every row or image (generation jobs: an answer to every
    prompt); GET /predictions/{id} until it is done, then download the CSV."""
    return PredictionOut.model_validate(ask_batch(session, settings, job, file, sampling))


@router.get("/predictions/{prediction_id}", response_model=PredictionOut)
def get_prediction(prediction: PredictionDep) -> PredictionOut:
    return PredictionOut.model_validate(prediction)


@router.get("/predictions/{prediction_id}/download", response_class=FileResponse)
def download_predictions(prediction: PredictionDep, settings: SettingsDep) -> FileResponse:
    path = predictions.output_csv(settings, prediction)
    if path is None:
        raise HTTPException(
            404, f"prediction {prediction.id} has no CSV: it is {prediction.status}"
        )
    filename = f"tuneboard-job-{prediction.job_id}-predictions-{prediction.id}.csv"
    return FileResponse(path, media_type="text/csv", filename=filename)
