"""Generation jobs on the predict lanes: a conversation answered into its Prediction row as
the tokens come, and a file of prompts answered into a CSV.

The web process never loads a model, so it cannot stream an answer itself: the worker
rewrites the row's `result` ({"text": answer so far, "done": false}) every
PARTIAL_EVERY_SECONDS while generating, and the playground fragment and the API's event
stream poll it. The row stays `queued` until the final answer (or failure) is written by
worker/predict.py, so a partial write never revives a finished or deleted row, and finding
the row gone stops the generation.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy import update

from app.db import get_sessionmaker
from app.predictions import generation
from app.predictions.batch_csv import write_csv
from app.predictions.models import Prediction, PredictionKind, PredictionStatus
from worker.training.chat_request import ChatRefused
from worker.training.generator import BATCH_SIZE, Generator

PARTIAL_EVERY_SECONDS = 0.2  # about five updates a second: smooth to read, light on the database
BATCH_CHUNK = 4 * BATCH_SIZE  # prompts answered between two progress updates


def answer(
    prediction: Prediction, where: Path, request: dict[str, Any], generator: Generator
) -> dict[str, Any]:
    """The final result of a generation prediction (its `result` column)."""
    sampling = request["sampling"]
    if prediction.kind == PredictionKind.chat:
        return _chat(prediction.id, generator, request["messages"], sampling)
    return _batch(prediction.id, generator, where, sampling)


def _still_asked(prediction_id: int, result: dict[str, Any]) -> bool:
    """Write a partial result; False when the row has been deleted or finished meanwhile."""
    with get_sessionmaker()() as session:
        written = session.execute(
            update(Prediction)
            .where(Prediction.id == prediction_id, Prediction.status == PredictionStatus.queued)
            .values(result=result)
        )
        session.commit()
    return bool(getattr(written, "rowcount", 0))


def _chat(
    prediction_id: int, generator: Generator, messages: list[dict[str, str]], sampling: dict
) -> dict[str, Any]:
    stream = generator.stream(messages, **sampling)
    text, written = "", time.monotonic()
    with closing(stream):  # stops the generation if the row goes away
        for piece in stream:
            text += piece
            if time.monotonic() - written >= PARTIAL_EVERY_SECONDS:
                if not _still_asked(prediction_id, {"text": text, "done": False}):
                    return {"text": text, "done": True, "finish_reason": "deleted"}
                written = time.monotonic()
    return {
        "text": stream.text,
        "done": True,
        "tokens": stream.tokens,
        "finish_reason": stream.finish_reason,
        # "length" short of this: the conversation filled the model's context
        "max_new_tokens": sampling["max_new_tokens"],
    }


def _batch(prediction_id: int, generator: Generator, where: Path, sampling: dict) -> dict[str, Any]:
    """One CSV row per prompt: line, prompt, response, and the reason where a prompt could
    not be answered (too long for the model), which does not stop the others."""
    rows = [json.loads(line) for line in (where / generation.PROMPTS).read_text().splitlines()]
    responses: dict[int, str] = {}
    errors: dict[int, str] = {}
    fitting = []
    for k, row in enumerate(rows):
        if "error" in row:  # found by the web (prompt_files.py): an empty prompt
            errors[k] = row["error"]
            continue
        try:
            generator.prompt_ids(row["messages"])
            fitting.append(k)
        except ChatRefused as exc:
            errors[k] = str(exc)
    for start in range(0, len(fitting), BATCH_CHUNK):
        chunk = fitting[start : start + BATCH_CHUNK]
        answers = generator.answers([rows[k]["messages"] for k in chunk], **sampling)
        responses.update(zip(chunk, answers, strict=True))
        progress = {"rows": len(rows), "answered": len(errors) + len(responses), "done": False}
        if not _still_asked(prediction_id, progress):
            return progress
    write_csv(
        where / "predictions.csv",
        ["line", "prompt", "response", "error"],
        (
            [row["line"], row["prompt"], responses.get(k, ""), errors.get(k, "")]
            for k, row in enumerate(rows)
        ),
    )
    return {"rows": len(rows), "skipped": len(errors)}
