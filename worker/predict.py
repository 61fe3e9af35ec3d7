"""The predict task: answer a playground question or a batch file from a job's exported model.

It runs on the `predict` queue in a long-lived worker (worker/main.py: no fresh process per
task), which keeps the last few models loaded, so a second question to the same job costs
one forward pass rather than a model load.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update

from app.config import get_settings
from app.datasets.parsing import DatasetFormat, read_table
from app.datasets.validation import cell_text
from app.db import get_sessionmaker
from app.jobs.artifacts import job_dir
from app.predictions import service as predictions
from app.predictions.batch_csv import write_csv
from app.predictions.models import Prediction, PredictionKind, PredictionStatus
from app.queue import PREDICT_TASK, celery_app
from worker.allocator import release_freed_memory
from worker.training import job_files

log = logging.getLogger("tuneboard.predict")
LOADED_MODELS = 3  # models kept in memory, least recently used dropped first
_loaded: OrderedDict[tuple[int, int], Any] = OrderedDict()


def _loaded_model(job_id: int, load: Callable[[Path], Any]) -> Any:
    """The job's exported model as `load` makes it (a Predictor, or a Generator for
    generation jobs), loaded once (keyed by the export's mtime, so a re-trained job is never
    answered by stale weights)."""
    model_dir = job_files.exported_model(job_dir(get_settings(), job_id))
    key = (job_id, (model_dir / "config.json").stat().st_mtime_ns)
    if key in _loaded:
        _loaded.move_to_end(key)
        return _loaded[key]
    log.info("loading the model of job %s", job_id)
    model = load(model_dir)
    _loaded[key] = model
    while len(_loaded) > LOADED_MODELS:
        _loaded.popitem(last=False)
    return model


def _answer(prediction: Prediction, where: Path) -> dict[str, Any]:
    from worker.predict_images import read_image
    from worker.training.predictor import load_predictor

    request_file = where / predictions.REQUEST
    request = json.loads(request_file.read_text()) if request_file.is_file() else {}
    if request.get("task") == "generation":
        from worker import predict_generation
        from worker.training.generator import load_generator

        generator = _loaded_model(prediction.job_id, load_generator)
        return predict_generation.answer(prediction, where, request, generator)
    predictor = _loaded_model(prediction.job_id, load_predictor)
    if prediction.kind == PredictionKind.text:
        pairs = [request["text_pair"]] if request.get("text_pair") is not None else None
        outputs = predictor.texts([request["text"]], pairs)[0]
        return predictor.task.answer(outputs, predictor.labels, predictor.config)
    if prediction.kind == PredictionKind.image:
        cap = get_settings().max_predict_image_pixels
        tensor = read_image(where / "input", predictor.preprocessing, cap)
        outputs = predictor.classify([tensor])[0]
        return predictor.task.answer(outputs, predictor.labels, predictor.config)
    if "files" in request:
        return _image_batch(predictor, where, request["files"])
    return _text_batch(predictor, where, request)


def _image_batch(predictor: Any, where: Path, files: list[str]) -> dict[str, Any]:
    """One row per file; a file that is not a usable image gets its reason instead. Images
    are read one at a time and kept only as the model's small input tensors
    (worker/predict_images.py), so memory does not follow the files' pixel counts."""
    from app.datasets.images import ImageRejected
    from worker.predict_images import batches, read_image

    cap = get_settings().max_predict_image_pixels
    rows: list[list[Any]] = []
    task, labels, config = predictor.task, predictor.labels, predictor.config
    results = task.csv_header(labels)

    def inputs() -> Iterator[tuple[int, Any]]:
        for name in files:
            rows.append([name])
            try:
                yield (
                    len(rows) - 1,
                    read_image(where / "images" / name, predictor.preprocessing, cap),
                )
            except ImageRejected as exc:
                cells = [""] * len(results)
                cells[results.index("error")] = str(exc)
                rows[-1] += cells

    for group in batches(inputs()):
        outputs = predictor.classify([tensor for _, tensor in group])
        for (row, _), out in zip(group, outputs, strict=True):
            rows[row] += task.csv_rows(out, labels, config)[0]  # images: one row each
    write_csv(where / "predictions.csv", ["file", *results], rows)
    error = 1 + results.index("error")
    return {"rows": len(rows), "skipped": sum(1 for row in rows if row[error])}


def _text_batch(predictor: Any, where: Path, request: dict[str, Any]) -> dict[str, Any]:
    table = read_table(where / "input", DatasetFormat(request["format"]))
    columns = request["columns"]
    texts = [cell_text(row.get(columns[0])) for row in table.rows]
    pairs = [cell_text(row.get(columns[1])) for row in table.rows] if len(columns) > 1 else None
    task, labels, config = predictor.task, predictor.labels, predictor.config
    rows = [
        [line, text[:200], *cells]
        for line, text, outputs in zip(
            table.lines, texts, predictor.texts(texts, pairs), strict=True
        )
        for cells in task.csv_rows(outputs, labels, config)  # entity tagging: one per entity
    ]
    header = ["line", "text", *task.csv_header(labels)]
    write_csv(where / "predictions.csv", header, rows)
    return {"rows": len(texts), "skipped": 0}


@celery_app.task(name=PREDICT_TASK, acks_late=True)
def run_prediction(prediction_id: int) -> None:
    sessions = get_sessionmaker()
    with sessions() as session:
        prediction = session.get(Prediction, prediction_id)
        if prediction is None or prediction.finished:
            return
        session.expunge(prediction)
    where = predictions.folder(get_settings(), prediction_id)
    try:
        values: dict[str, Any] = {
            "status": PredictionStatus.succeeded,
            "result": _answer(prediction, where),
        }
    except Exception as exc:  # noqa: BLE001 - any failure must reach the page
        log.exception("prediction %s failed", prediction_id)
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        values = {"status": PredictionStatus.failed, "error": reason}
    # This process lives on and keeps its peak heap (worker/allocator.py): give back what
    # the task freed, so a big batch does not raise every later question's footprint.
    release_freed_memory()
    with sessions() as session:
        session.execute(
            update(Prediction)
            .where(Prediction.id == prediction_id, Prediction.status == PredictionStatus.queued)
            .values(finished_at=datetime.now(UTC), **values)
        )
        session.commit()
