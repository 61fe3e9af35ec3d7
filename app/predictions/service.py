"""Asking a finished job's model: one text, one image, or a batch file.

The web checks the input (an image's format and size, a batch file's rows or archive) and
answers a bad one at once; it then commits the question, stores its input under the
prediction's own folder and sends the id to the `predict` queue. The web never loads a
model: a predict worker does (worker/predict.py), from the job's exported folder.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.accounts.quotas import check_predictions
from app.config import Settings
from app.datasets.archives import extract_zip
from app.datasets.image_datasets import archive_limits, is_zip
from app.datasets.images import ImageRejected, inspect_image
from app.datasets.models import Modality
from app.datasets.parsing import ParseError, detect_format, read_table
from app.datasets.uploads import StoredUpload
from app.jobs.models import Job, JobStatus
from app.jobs.service import JobConflict
from app.predictions.models import Prediction, PredictionKind, PredictionStatus
from app.queue import enqueue_prediction

MAX_TEXT_CHARS = 20_000
MAX_BATCH_ROWS = 100_000
REQUEST = "request.json"  # what the worker needs besides the input: columns, file list


class PredictionRefused(ValueError):
    """The input cannot be predicted on; the message says why and what to send instead."""


def folder(settings: Settings, prediction_id: int) -> Path:
    return settings.data_dir / "predictions" / str(int(prediction_id))


def is_generation(job: Job) -> bool:
    """Whether the job's model writes answers (a causal language model) rather than
    classifying, tagging or scoring what it reads."""
    return job.dataset.task == "generation"


def check_ready(job: Job, *, generation: bool = False) -> None:
    """The job's model can be asked this kind of question: it is a generation job exactly
    when `generation` (422 otherwise), and it has succeeded with an export (409)."""
    if is_generation(job) and not generation:
        raise PredictionRefused(
            f"job {job.id}'s model writes answers: ask it with POST /api/v1/jobs/{job.id}/"
            'generate and JSON {"prompt": "..."} or {"messages": [...]}, or in the chat on '
            "its page"
        )
    if generation and not is_generation(job):
        raise PredictionRefused(
            f"job {job.id} was trained for {job.dataset.task.replace('_', ' ')}, not "
            f"generation: ask it with POST /api/v1/jobs/{job.id}/predict (form field 'text' "
            "or 'image'); generate needs a job trained on prompts and responses"
        )
    if job.status != JobStatus.succeeded or not job.export_ready:
        raise JobConflict(
            f"job {job.id} has no trained model to ask yet (it is {job.status.value}); "
            "the playground opens when the job has succeeded"
        )


def create(
    session: Session,
    settings: Settings,
    job: Job,
    kind: PredictionKind,
    input_name: str,
    write: Any,
) -> Prediction:
    """Commit the row, write its input folder with `write(folder)`, then enqueue: a single
    question on the `predict` lane, a batch on its own, so a batch never delays a question."""
    check_predictions(session, settings, job.owner_id)
    prediction = Prediction(
        job_id=job.id, owner_id=job.owner_id, kind=kind, input_name=input_name[:300]
    )
    session.add(prediction)
    session.flush()
    target = folder(settings, prediction.id)
    try:
        target.mkdir(parents=True, exist_ok=False)
        write(target)
        session.commit()
    except BaseException:
        session.rollback()
        shutil.rmtree(target, ignore_errors=True)
        raise
    enqueue_prediction(prediction.id, batch=kind == PredictionKind.batch)
    return prediction


def ask_text(
    session: Session, settings: Settings, job: Job, text: str, text_pair: str | None = None
) -> Prediction:
    check_ready(job)
    if job.dataset.modality != Modality.text:
        raise PredictionRefused("this model classifies images; drop an image instead")
    if not text.strip():
        raise PredictionRefused("type a text to classify")
    if len(text) > MAX_TEXT_CHARS or len(text_pair or "") > MAX_TEXT_CHARS:
        raise PredictionRefused(
            f"the text is over {MAX_TEXT_CHARS:,} characters; use a batch file for long texts"
        )
    needs_pair = job.dataset.text_pair_column is not None
    if needs_pair and not (text_pair or "").strip():
        raise PredictionRefused("this model reads text pairs; fill in the second text too")
    request = {"text": text, "text_pair": text_pair if needs_pair else None}
    return create(
        session,
        settings,
        job,
        PredictionKind.text,
        text,
        lambda f: (f / REQUEST).write_text(json.dumps(request)),
    )


def ask_image(session: Session, settings: Settings, job: Job, upload: StoredUpload) -> Prediction:
    check_ready(job)
    if job.dataset.modality != Modality.image:
        raise PredictionRefused("this model classifies text; type a text instead")
    try:
        inspect_image(upload.path, settings.max_image_pixels)
    except ImageRejected as exc:
        raise PredictionRefused(f"{upload.original_filename}: {exc}") from exc
    return create(
        session,
        settings,
        job,
        PredictionKind.image,
        upload.original_filename,
        lambda f: shutil.move(upload.path, f / "input"),
    )


def ask_batch(session: Session, settings: Settings, job: Job, upload: StoredUpload) -> Prediction:
    """A ZIP of images (image models) or a table with the dataset's text column (text
    models); the worker writes predictions.csv."""
    check_ready(job)
    if job.dataset.modality == Modality.image:
        return _image_batch(session, settings, job, upload)
    return _text_batch(session, settings, job, upload)


def _image_batch(
    session: Session, settings: Settings, job: Job, upload: StoredUpload
) -> Prediction:
    if not is_zip(upload.path):
        raise PredictionRefused("for a batch of images, upload a ZIP of them (any folders)")

    def write(target: Path) -> None:
        files = extract_zip(upload.path, target / "images", archive_limits(settings))
        if not files:
            raise PredictionRefused("the ZIP holds no files to classify")
        if len(files) > MAX_BATCH_ROWS:
            raise PredictionRefused(f"the ZIP holds over {MAX_BATCH_ROWS:,} files; split it")
        (target / REQUEST).write_text(json.dumps({"files": files}))

    return create(session, settings, job, PredictionKind.batch, upload.original_filename, write)


def _text_batch(session: Session, settings: Settings, job: Job, upload: StoredUpload) -> Prediction:
    with upload.path.open("rb") as f:
        fmt = detect_format(upload.original_filename, f.read(4096))
    table = read_table(upload.path, fmt)
    dataset = job.dataset
    wanted = [dataset.text_column] + (
        [dataset.text_pair_column] if dataset.text_pair_column else []
    )
    columns = []
    for name in wanted:
        if name in table.columns:
            columns.append(name)
        elif len(wanted) == 1 and "text" in table.columns:
            columns.append("text")
        else:
            raise ParseError(
                f"the file has no column '{name}' (the dataset's); it has: "
                f"{', '.join(table.columns)}",
                column=name,
            )
    if not table.rows:
        raise PredictionRefused("the file has no rows to classify")
    if len(table.rows) > MAX_BATCH_ROWS:
        raise PredictionRefused(f"the file has over {MAX_BATCH_ROWS:,} rows; split it")
    request = {"format": fmt.value, "columns": columns}

    def write(target: Path) -> None:
        shutil.move(upload.path, target / "input")
        (target / REQUEST).write_text(json.dumps(request))

    return create(session, settings, job, PredictionKind.batch, upload.original_filename, write)


def wait(sessions: sessionmaker[Session], prediction_id: int, *, timeout: float) -> Prediction:
    """The prediction once answered, or as it stands after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as session:
            prediction = session.get(Prediction, prediction_id)
            assert prediction is not None
            if prediction.finished or time.monotonic() >= deadline:
                session.expunge(prediction)
                return prediction
        time.sleep(0.1)


def get(session: Session, prediction_id: int) -> Prediction | None:
    return session.get(Prediction, prediction_id)


def output_csv(settings: Settings, prediction: Prediction) -> Path | None:
    path = folder(settings, prediction.id) / "predictions.csv"
    ready = prediction.status == PredictionStatus.succeeded and path.is_file()
    return path if prediction.kind == PredictionKind.batch and ready else None
