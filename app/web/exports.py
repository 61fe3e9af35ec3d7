"""Serving a job's published export. The path is built from the job id alone."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import FileResponse

from app.config import Settings
from app.jobs.artifacts import export_path
from app.jobs.models import Job


def export_response(job: Job, settings: Settings) -> FileResponse:
    path = export_path(settings, job.id)
    if not job.export_ready or not path.is_file():
        raise HTTPException(404, f"job {job.id} has no export yet: it is {job.status.value}")
    filename = f"tuneboard-job-{job.id}-{job.effective_strategy.value}.zip"
    return FileResponse(path, media_type="application/zip", filename=filename)
