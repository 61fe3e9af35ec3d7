"""The playground on a finished job's page: ask about one text or image, or a batch file.
The answer fragment polls itself until the predict worker has answered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from app.db import get_sessionmaker
from app.predictions import service as predictions
from app.predictions.models import Prediction
from app.web.auth import check_csrf, current_user
from app.web.deps import JobDep, PredictionDep, SessionDep, SettingsDep
from app.web.errors import DOMAIN_ERRORS, error_body
from app.web.predictions_api import ask_batch, ask_one
from app.web.templating import render

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)
TEMPLATE = "jobs/_prediction.html"
# Long enough that a warm predict worker's answer arrives with the form's response.
INLINE_WAIT_SECONDS = 3.0


def _answer(
    request: Request, prediction: Prediction | None, error: str | None = None, status: int = 200
) -> Response:
    return render(request, TEMPLATE, {"prediction": prediction, "error": error}, status=status)


@router.post("/jobs/{job_id}/playground", response_class=HTMLResponse)
def ask(
    request: Request,
    job: JobDep,
    session: SessionDep,
    settings: SettingsDep,
    text: Annotated[str | None, Form()] = None,
    text_pair: Annotated[str | None, Form()] = None,
    image: Annotated[UploadFile | None, File()] = None,
) -> Response:
    try:
        prediction = ask_one(session, settings, job, text=text, text_pair=text_pair, image=image)
    except DOMAIN_ERRORS as exc:
        status, body = error_body(exc)
        return _answer(request, None, str(body["detail"]), status)
    answered = predictions.wait(get_sessionmaker(), prediction.id, timeout=INLINE_WAIT_SECONDS)
    return _answer(request, answered)


@router.post("/jobs/{job_id}/playground/batch", response_class=HTMLResponse)
def ask_file(
    request: Request,
    job: JobDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
) -> Response:
    try:
        prediction = ask_batch(session, settings, job, file)
    except DOMAIN_ERRORS as exc:
        status, body = error_body(exc)
        return _answer(request, None, str(body["detail"]), status)
    return _answer(request, prediction)


@router.get("/predictions/{prediction_id}/answer", response_class=HTMLResponse)
def answer(request: Request, prediction: PredictionDep) -> Response:
    return _answer(request, prediction)
