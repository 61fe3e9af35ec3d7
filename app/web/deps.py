"""Dependency aliases shared by the API and the pages.

Every object is looked up by id *and* owner: another user's id answers exactly as an id
that does not exist (404), so existence is not revealed. Admins see everything.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Path, Query
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.ownership import visible
from app.comparisons.models import Comparison
from app.config import Settings, get_settings
from app.datasets.models import Dataset
from app.datasets.samples import Sample, get_sample
from app.db import session_scope
from app.jobs.models import Job
from app.predictions.models import Prediction
from app.web.auth import UserDep

SessionDep = Annotated[Session, Depends(session_scope)]
# Row ids are 32-bit integers in PostgreSQL; a larger id cannot name a row (and would make
# the database driver raise), so it is a 422 like any other malformed id.
MAX_ID = 2**31 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
T = TypeVar("T")


def _found(session: Session, user: User, table: type[T], object_id: int, *, status: int = 404) -> T:
    row = session.get(table, object_id)
    if row is None or not visible(user, row):
        name = table.__name__.lower()
        raise HTTPException(status, f"no {name} with id {object_id}")
    return row


def _dataset(dataset_id: Id, session: SessionDep, user: UserDep) -> Dataset:
    return _found(session, user, Dataset, dataset_id)


def _query_dataset(
    dataset_id: Annotated[int, Query(ge=1, le=MAX_ID)], session: SessionDep, user: UserDep
) -> Dataset:
    """A dataset named in the query string; unknown ids are a 422 there, not a 404."""
    return _found(session, user, Dataset, dataset_id, status=422)


def _job(job_id: Id, session: SessionDep, user: UserDep) -> Job:
    return _found(session, user, Job, job_id)


def _comparison(comparison_id: Id, session: SessionDep, user: UserDep) -> Comparison:
    return _found(session, user, Comparison, comparison_id)


def _prediction(prediction_id: Id, session: SessionDep, user: UserDep) -> Prediction:
    return _found(session, user, Prediction, prediction_id)


def _sample(sample_id: Annotated[str, Path(max_length=100)]) -> Sample:
    sample = get_sample(sample_id)
    if sample is None:
        raise HTTPException(404, f"no sample dataset {sample_id!r}")
    return sample


DatasetDep = Annotated[Dataset, Depends(_dataset)]
QueryDatasetDep = Annotated[Dataset, Depends(_query_dataset)]
JobDep = Annotated[Job, Depends(_job)]
ComparisonDep = Annotated[Comparison, Depends(_comparison)]
PredictionDep = Annotated[Prediction, Depends(_prediction)]
SampleDep = Annotated[Sample, Depends(_sample)]
