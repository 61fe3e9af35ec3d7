"""Domain errors → HTTP answers, so routes stay thin and a bad input is never a 500."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.accounts.quotas import QuotaExceeded
from app.accounts.service import AccountInvalid
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
    raise exc


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
)


def install(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        status, body = error_body(exc)
        return JSONResponse(body, status_code=status)

    for exc_type in DOMAIN_ERRORS:
        app.add_exception_handler(exc_type, handle)
