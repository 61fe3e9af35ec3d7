"""Dependency aliases shared by the API and the pages."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException
from sqlalchemy.orm import Session

from app.comparisons.models import Comparison
from app.config import Settings, get_settings
from app.datasets.models import Dataset
from app.db import session_scope
from app.jobs.models import Job
from app.predictions.models import Prediction

SessionDep = Annotated[Session, Depends(session_scope)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
T = TypeVar("T")


def _found(session: Session, table: type[T], object_id: int, *, status: int = 404) -> T:
    row = session.get(table, object_id)
    if row is None:
        name = table.__name__.lower()
        raise HTTPException(status, f"no {name} with id {object_id}")
    return row


def _dataset(dataset_id: int, session: SessionDep) -> Dataset:
    return _found(session, Dataset, dataset_id)


def _query_dataset(dataset_id: int, session: SessionDep) -> Dataset:
    """A dataset named in the query string; unknown ids are a 422 there, not a 404."""
    return _found(session, Dataset, dataset_id, status=422)


def _job(job_id: int, session: SessionDep) -> Job:
    return _found(session, Job, job_id)


def _comparison(comparison_id: int, session: SessionDep) -> Comparison:
    return _found(session, Comparison, comparison_id)


def _prediction(prediction_id: int, session: SessionDep) -> Prediction:
    return _found(session, Prediction, prediction_id)


DatasetDep = Annotated[Dataset, Depends(_dataset)]
QueryDatasetDep = Annotated[Dataset, Depends(_query_dataset)]
JobDep = Annotated[Job, Depends(_job)]
ComparisonDep = Annotated[Comparison, Depends(_comparison)]
PredictionDep = Annotated[Prediction, Depends(_prediction)]
