"""Generation jobs through the JSON API: an answer within the request, or as server-sent
events while the model writes it.

Both commit the question and leave the model to the predict worker, which writes the answer
into the prediction's row as it grows (worker/predict_generation.py). The stream polls that
row from this process, asynchronously, and sends what is new: the web never loads a model.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.db import get_sessionmaker
from app.predictions import service as predictions
from app.predictions.generation import GenerateIn, GenerationOut, ask_chat
from app.predictions.models import Prediction, PredictionStatus
from app.web.auth import check_csrf, current_user
from app.web.deps import JobDep, SessionDep, SettingsDep

router = APIRouter(
    prefix="/api/v1",
    tags=["playground"],
    dependencies=[Depends(current_user), Depends(check_csrf)],
)
POLL_SECONDS = 0.1  # the worker writes about every 0.2 s
MAX_STREAM_SECONDS = 900.0  # then the stream ends, saying where to poll for the rest
STREAM_DOCS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "`event: start` with the prediction id, then `data:` events with "
        'each new piece of the answer (`{"text": "..."}`), then `event: done` with the '
        "whole answer (as /generate answers), or `event: error` with its `detail`.",
    }
}


@router.post("/jobs/{job_id}/generate", response_model=GenerationOut)
def generate(
    job: JobDep,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    body: GenerateIn,
    wait: Annotated[
        float, Query(ge=0, le=300, description="Seconds to wait for the whole answer")
    ] = 60,
) -> GenerationOut:
    """A generation job's answer to a `prompt` or to chat `messages`: 200 with it, or 202
    with what is written so far if it is not done within `wait` seconds (poll
    GET /predictions/{prediction_id}, whose `result.text` grows until `status` is final)."""
    prediction = ask_chat(session, settings, job, body.conversation(), body.sampling())
    answered = predictions.wait(get_sessionmaker(), prediction.id, timeout=wait)
    if not answered.finished:
        response.status_code = 202
    return GenerationOut.of(answered)


@router.post(
    "/jobs/{job_id}/generate/stream", response_class=StreamingResponse, responses=STREAM_DOCS
)
def generate_stream(
    job: JobDep, session: SessionDep, settings: SettingsDep, body: GenerateIn
) -> StreamingResponse:
    """The answer as server-sent events while the model writes it. A bad question is
    refused (422, 409) before the stream starts."""
    prediction = ask_chat(session, settings, job, body.conversation(), body.sampling())
    return StreamingResponse(
        _events(prediction.id),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no", "X-Prediction-Id": str(prediction.id)},
    )


def _event(data: Any, name: str | None = None) -> str:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _read(prediction_id: int) -> Prediction | None:
    with get_sessionmaker()() as session:
        prediction = session.get(Prediction, prediction_id)
        if prediction is not None:
            session.expunge(prediction)
        return prediction


async def _events(prediction_id: int) -> AsyncIterator[str]:
    """Poll the row; send each new piece of its text, then how it ended. Starlette stops
    this generator when the client goes away; the worker finishes the answer regardless."""
    yield _event({"prediction_id": prediction_id}, "start")
    sent = ""
    deadline = time.monotonic() + MAX_STREAM_SECONDS
    while True:
        prediction = await run_in_threadpool(_read, prediction_id)
        if prediction is None:
            yield _event({"detail": f"prediction {prediction_id} was deleted"}, "error")
            return
        text = str((prediction.result or {}).get("text", ""))
        if len(text) > len(sent) and text.startswith(sent):
            yield _event({"text": text[len(sent) :]})
            sent = text
        if prediction.status == PredictionStatus.failed:
            detail = f"the model could not answer: {prediction.error}"
            yield _event({"detail": detail, "prediction_id": prediction_id}, "error")
            return
        if prediction.finished:
            yield _event(GenerationOut.of(prediction).model_dump(), "done")
            return
        if time.monotonic() > deadline:
            detail = f"still writing; poll GET /api/v1/predictions/{prediction_id} for the rest"
            yield _event({"detail": detail, "prediction_id": prediction_id}, "error")
            return
        await asyncio.sleep(POLL_SECONDS)
