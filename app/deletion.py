"""Deleting a dataset, a job, a comparison or a prediction, with everything made from it.

What goes with what:

- a prediction: its row and its folder (the input, and a batch's predictions.csv);
- a job: its predictions, metric points and log lines, its row and its folder (checkpoints,
  export); a comparison left without jobs goes with its last one;
- a comparison: its jobs (as above) and its row; the dataset stays;
- a dataset: every job and comparison made from it (an admin's job on it included: nothing
  may outlive its data), its row and folder, and its cached features unless another dataset
  holds the same files. Storage quotas sum the remaining datasets, so its size is freed.

Unfinished jobs are cancelled first. A queued one is cancelled at once and deleted in the
same call. A running one stops at its next step, but until then its worker still writes its
folder and rows, so the call asks it to stop and refuses with DeletionBlocked (409): nothing
is deleted, and the same request a few seconds later goes through. A dataset whose upload is
still being checked can be deleted: its check finds it gone (app/datasets/checking.py).

Rows go children first (predictions, metrics, logs, jobs, comparisons, datasets) in one
transaction, which foreign keys accept on SQLite and PostgreSQL alike. Files go after the
commit: a failure then leaves a stray folder, never a row pointing at missing files.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.comparisons.models import Comparison
from app.config import Settings
from app.datasets.folders import dataset_folder
from app.datasets.models import Dataset
from app.jobs import artifacts
from app.jobs import service as jobs
from app.jobs.models import Job, JobLog, JobStatus, MetricPoint
from app.predictions import service as predictions
from app.predictions.models import Prediction

log = logging.getLogger("tuneboard.deletion")
UNFINISHED = (JobStatus.queued, JobStatus.running)


class DeletionBlocked(jobs.JobConflict):
    """A job to delete is still running (it has been asked to stop): 409, try again."""


@dataclass
class Removal:
    """The rows one deletion takes with it, by id; `kind` is what was asked to be deleted."""

    kind: str
    datasets: list[Dataset] = field(default_factory=list)
    comparison_ids: list[int] = field(default_factory=list)
    job_ids: list[int] = field(default_factory=list)
    prediction_ids: list[int] = field(default_factory=list)
    unfinished_job_ids: list[int] = field(default_factory=list)

    def summary(self, subject: str) -> str:
        """One sentence for the confirmation, after `subject` ('this dataset'): 'Deletes this
        dataset, its 3 jobs with their checkpoints, exported models, metrics and logs …'."""
        parts = [subject]
        if self.kind != "job" and self.job_ids:
            jobs_ = _count(len(self.job_ids), "job")
            parts.append(f"its {jobs_} with their checkpoints, exported models, metrics and logs")
        if self.kind == "dataset" and self.comparison_ids:
            parts.append(f"its {_count(len(self.comparison_ids), 'comparison')}")
        if self.kind != "prediction" and self.prediction_ids:
            parts.append(_count(len(self.prediction_ids), "playground prediction"))
        sentence = "Deletes " + _join(parts) + "."
        if self.unfinished_job_ids and self.kind == "job":
            sentence += " The job is not finished: it is cancelled first."
        elif self.unfinished_job_ids:
            ids = ", ".join(str(i) for i in self.unfinished_job_ids)
            sentence += f" Unfinished jobs ({ids}) are cancelled first."
        return sentence


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _jobs_of(session: Session, removal: Removal, condition: ColumnElement[bool]) -> Removal:
    rows = session.execute(select(Job.id, Job.status).where(condition).order_by(Job.id)).all()
    removal.job_ids += [job_id for job_id, _ in rows]
    removal.unfinished_job_ids += [job_id for job_id, status in rows if status in UNFINISHED]
    if removal.job_ids:
        removal.prediction_ids += session.scalars(
            select(Prediction.id).where(Prediction.job_id.in_(removal.job_ids))
        ).all()
    return removal


def plan_dataset(session: Session, dataset: Dataset) -> Removal:
    removal = Removal("dataset", datasets=[dataset])
    removal.comparison_ids = list(
        session.scalars(select(Comparison.id).where(Comparison.dataset_id == dataset.id))
    )
    return _jobs_of(session, removal, Job.dataset_id == dataset.id)


def plan_comparison(session: Session, comparison: Comparison) -> Removal:
    removal = Removal("comparison", comparison_ids=[comparison.id])
    return _jobs_of(session, removal, Job.comparison_id == comparison.id)


def plan_job(session: Session, job: Job) -> Removal:
    removal = _jobs_of(session, Removal("job"), Job.id == job.id)
    if job.comparison_id is not None:
        left = session.scalar(
            select(func.count()).select_from(Job).where(Job.comparison_id == job.comparison_id)
        )
        if left == 1:  # this job is its comparison's last
            removal.comparison_ids.append(job.comparison_id)
    return removal


def plan_prediction(prediction: Prediction) -> Removal:
    return Removal("prediction", prediction_ids=[prediction.id])


def carry_out(session: Session, settings: Settings, removal: Removal) -> None:
    """Cancel unfinished jobs, then delete the rows and files; DeletionBlocked while one of
    the jobs is still running."""
    _stop(session, removal.unfinished_job_ids)
    dataset_ids = [d.id for d in removal.datasets]
    content_hashes = {d.content_hash for d in removal.datasets}
    try:
        _delete_rows(session, removal, dataset_ids)
    except IntegrityError as exc:  # something was made from these rows meanwhile
        session.rollback()
        raise DeletionBlocked(
            "something new was made from this while deleting it; try again"
        ) from exc
    folders = [predictions.folder(settings, i) for i in removal.prediction_ids]
    folders += [artifacts.job_dir(settings, i) for i in removal.job_ids]
    folders += [dataset_folder(settings, d.id) for d in removal.datasets]
    for content_hash in content_hashes:
        still_used = session.scalar(
            select(func.count()).select_from(Dataset).where(Dataset.content_hash == content_hash)
        )
        if not still_used:
            folders.append(artifacts.feature_cache_dir(settings, content_hash))
    for folder in folders:
        _remove(folder)


def _stop(session: Session, job_ids: list[int]) -> None:
    if not job_ids:
        return
    for job in session.scalars(select(Job).where(Job.id.in_(job_ids))).all():
        if not job.status.finished:
            with contextlib.suppress(jobs.JobConflict):  # it finished meanwhile
                jobs.request_cancel(session, job)  # a queued job is cancelled at once
    running = session.scalars(
        select(Job.id).where(Job.id.in_(job_ids), Job.status == JobStatus.running)
    ).all()
    if running:
        which = f"job {running[0]} is" if len(running) == 1 else f"jobs {list(running)} are"
        raise DeletionBlocked(
            f"{which} running and asked to stop now; nothing was deleted yet. "
            "Delete again in a few seconds, once it shows cancelled"
        )


def _delete_rows(session: Session, removal: Removal, dataset_ids: list[int]) -> None:
    job_ids = removal.job_ids
    statements = [
        delete(Prediction).where(Prediction.id.in_(removal.prediction_ids)),
        delete(MetricPoint).where(MetricPoint.job_id.in_(job_ids)),
        delete(JobLog).where(JobLog.job_id.in_(job_ids)),
        delete(Job).where(Job.id.in_(job_ids)),
        delete(Comparison).where(Comparison.id.in_(removal.comparison_ids)),
        delete(Dataset).where(Dataset.id.in_(dataset_ids)),
    ]
    for statement in statements:
        session.execute(statement.execution_options(synchronize_session=False))
    session.commit()
    session.expunge_all()  # the deleted objects must not be used again


def _remove(folder: Path) -> None:
    if not folder.exists():
        return
    try:
        shutil.rmtree(folder)
    except OSError:
        log.warning("could not remove %s; remove it by hand", folder, exc_info=True)
