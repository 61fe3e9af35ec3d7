"""Domain errors → HTTP answers, so routes stay thin and a bad input is never a 500."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.accounts.passwords import PasswordChecksBusy
from app.accounts.quotas import QuotaExceeded
from app.accounts.service import AccountInvalid
from app.accounts.throttle import TooManyAttempts
from app.catalog import UnknownModel
from app.datasets.archives import ArchiveError
from app.datasets.parsing import ParseError
from app.datasets.uploads import UploadTooLarge
from app.datasets.validation import DatasetInvalid
from app.jobs.service import DatasetNotFound, InvalidJob, JobConflict
from app.predictions.service import PredictionRefused


def error_body(exc: Exception) -> tuple[int, dict[str, object]]:
    if isinstance(exc, ParseError):
        return 422, {"detail": str(exc), "line": exc.line, "column": exc.column}
    if isinstance(exc, ArchiveError):
        return 422, {"detail": str(exc), "member": exc.member}
    if isinstance(exc, DatasetInvalid):
        return 422, {"detail": str(exc), "errors": [e.__dict__ for e in exc.errors]}
    if isinstance(exc, UploadTooLarge):
        return 413, {"detail": str(exc)}
    if isinstance(exc, UnknownModel | DatasetNotFound | PredictionRefused | InvalidJob):
        return 422, {"detail": str(exc)}
    if isinstance(exc, JobConflict):
        return 409, {"detail": str(exc)}
    if isinstance(exc, QuotaExceeded):
        return 429, {"detail": str(exc)}
    if isinstance(exc, AccountInvalid):
        return 422, {"detail": str(exc)}
    if isinstance(exc, TooManyAttempts):
        return 429, {"detail": str(exc)}
    if isinstance(exc, PasswordChecksBusy):
        return 503, {"detail": str(exc)}
    raise exc


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic's errors with at most a short echo of what was sent: an error must never send
    a (possibly huge, possibly hostile) body back, nor values JSON cannot carry (NaN)."""
    return [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", ""))[:300],
            "type": e.get("type"),
            **({"input": e["input"]} if _short(e.get("input")) else {}),
        }
        for e in list(errors)[:20]
    ]


def _short(value: Any) -> bool:
    """A scalar worth echoing: a short string (one that is text: JSON's "\\ud800" escape
    gives half a character, which no response can encode), or a finite number."""
    if isinstance(value, str):
        return len(value) <= 80 and not any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, bool | int):
        return abs(value) < 2**63
    return isinstance(value, float) and math.isfinite(value)


DOMAIN_ERRORS = (
    ParseError,
    ArchiveError,
    DatasetInvalid,
    UploadTooLarge,
    UnknownModel,
    DatasetNotFound,
    JobConflict,
    PredictionRefused,
    InvalidJob,
    QuotaExceeded,
    AccountInvalid,
    TooManyAttempts,
    PasswordChecksBusy,
)


def install(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        status, body = error_body(exc)
        headers = (
            {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyAttempts) else None
        )
        return JSONResponse(body, status_code=status, headers=headers)

    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=422)

    for exc_type in DOMAIN_ERRORS:
        app.add_exception_handler(exc_type, handle)
    app.add_exception_handler(RequestValidationError, invalid_request)
