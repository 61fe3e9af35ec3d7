"""Dependency aliases shared by the API and the pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException
from sqlalchemy.orm import Session

from app.comparisons.models import Comparison
from app.config import Settings, get_settings
from app.datasets.models import Dataset
from app.db import session_scope
from app.jobs.models import Job

SessionDep = Annotated[Session, Depends(session_scope)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _dataset(dataset_id: int, session: SessionDep) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise HTTPException(404, f"no dataset with id {dataset_id}")
    return dataset


def _job(job_id: int, session: SessionDep) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id}")
    return job


DatasetDep = Annotated[Dataset, Depends(_dataset)]
JobDep = Annotated[Job, Depends(_job)]


def _comparison(comparison_id: int, session: SessionDep) -> Comparison:
    comparison = session.get(Comparison, comparison_id)
    if comparison is None:
        raise HTTPException(404, f"no comparison with id {comparison_id}")
    return comparison


def _query_dataset(dataset_id: int, session: SessionDep) -> Dataset:
    """A dataset named in the query string; unknown ids are a 422 there, not a 404."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise HTTPException(422, f"no dataset with id {dataset_id}")
    return dataset


ComparisonDep = Annotated[Comparison, Depends(_comparison)]
QueryDatasetDep = Annotated[Dataset, Depends(_query_dataset)]
