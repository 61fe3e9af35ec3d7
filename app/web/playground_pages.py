"""The playground on a finished job's page: ask about one text or image, or a batch file.
The answer fragment polls itself until the predict worker has answered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from app.db import get_sessionmaker
from app.predictions import service as predictions
from app.predictions.generation import GenerateIn, SamplingIn, ask_chat
from app.predictions.models import Prediction
from app.predictions.service import PredictionRefused
from app.web.auth import check_csrf, current_user
from app.web.deps import JobDep, PredictionDep, SessionDep, SettingsDep
from app.web.errors import DOMAIN_ERRORS, error_body
from app.web.predictions_api import ask_batch, ask_one
from app.web.templating import render, templates
from worker.training.chat_request import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    MAX_NEW_TOKENS,
    MAX_TEMPERATURE,
)

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)
TEMPLATE = "jobs/_prediction.html"
# Long enough that a warm predict worker's answer arrives with the form's response.
INLINE_WAIT_SECONDS = 3.0
# The chat form's defaults and limits (jobs/_chat_playground.html): the predict worker's own.
templates.env.globals["chat_settings"] = {
    "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
    "temperature": DEFAULT_TEMPERATURE,
    "top_p": DEFAULT_TOP_P,
    "max_max_new_tokens": MAX_NEW_TOKENS,
    "max_temperature": MAX_TEMPERATURE,
}


def problems(exc: ValidationError) -> str:
    """A form's validation errors in one line a person can act on."""
    said = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        said.append(f"{field}: {message}" if field else message)
    return "; ".join(said)


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


@router.post("/jobs/{job_id}/playground/chat", response_class=HTMLResponse)
def chat(
    request: Request,
    job: JobDep,
    session: SessionDep,
    settings: SettingsDep,
    prompt: Annotated[str, Form()] = "",
    system: Annotated[str, Form()] = "",
    role: Annotated[list[str] | None, Form()] = None,
    content: Annotated[list[str] | None, Form()] = None,
    max_new_tokens: Annotated[str, Form()] = str(DEFAULT_MAX_NEW_TOKENS),
    temperature: Annotated[str, Form()] = str(DEFAULT_TEMPERATURE),
    top_p: Annotated[str, Form()] = str(DEFAULT_TOP_P),
) -> Response:
    """One more turn of the page's chat: the turns so far come back as the hidden role and
    content fields each finished turn holds (the page keeps the conversation, not the
    server). Answers with the user's turn and the answer fragment, which polls itself as the
    answer is written; a bad question answers the error beside the form instead."""
    roles, contents = role or [], content or []
    turns = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]
    system_turn = [{"role": "system", "content": system}] if system.strip() else []
    question = {
        "messages": [*system_turn, *turns, {"role": "user", "content": prompt}],
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
    }
    try:
        if len(roles) != len(contents):
            raise PredictionRefused("the conversation's turns came back garbled; start a new chat")
        asked = GenerateIn.model_validate(question)
        prediction = ask_chat(session, settings, job, asked.conversation(), asked.sampling())
    except ValidationError as exc:
        return _chat_error(request, problems(exc), 422)
    except DOMAIN_ERRORS as exc:
        status, body = error_body(exc)
        return _chat_error(request, str(body["detail"]), status)
    context = {"prediction": prediction, "prompt": prompt}
    return render(request, "jobs/_chat_turn.html", context)


def _chat_error(request: Request, error: str, status: int) -> Response:
    """The error shown under the chat's form, not appended to the conversation."""
    response = render(request, TEMPLATE, {"prediction": None, "error": error}, status=status)
    response.headers["HX-Retarget"] = "#chat-error"
    response.headers["HX-Reswap"] = "innerHTML"
    return response


@router.post("/jobs/{job_id}/playground/batch", response_class=HTMLResponse)
def ask_file(
    request: Request,
    job: JobDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
    max_new_tokens: Annotated[str, Form()] = str(DEFAULT_MAX_NEW_TOKENS),
    temperature: Annotated[str, Form()] = str(DEFAULT_TEMPERATURE),
    top_p: Annotated[str, Form()] = str(DEFAULT_TOP_P),
) -> Response:
    numbers = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
    try:
        sampling = SamplingIn.model_validate(numbers).sampling()
    except ValidationError as exc:
        return _answer(request, None, problems(exc), 422)
    try:
        prediction = ask_batch(session, settings, job, file, sampling)
    except DOMAIN_ERRORS as exc:
        status, body = error_body(exc)
        return _answer(request, None, str(body["detail"]), status)
    return _answer(request, prediction)


@router.get("/predictions/{prediction_id}/answer", response_class=HTMLResponse)
def answer(request: Request, prediction: PredictionDep) -> Response:
    return _answer(request, prediction)
