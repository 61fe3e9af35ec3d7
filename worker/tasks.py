"""Celery tasks. A task takes a job id, claims the job in the database and runs it; the
training code itself lives in worker/training and knows nothing of Celery or SQL."""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app import catalog
from app.config import get_settings
from app.datasets.training_data import load_training_data
from app.db import get_sessionmaker
from app.jobs import fair_share
from app.jobs import service as jobs
from app.jobs.artifacts import feature_cache_dir
from app.jobs.models import Device, Job, JobStatus
from app.jobs.params import resolve_params
from app.jobs.recommend import recommend
from app.jobs.strategies import Strategy
from app.queue import TRAIN_TASK, celery_app, hard_time_limit
from app.workers.service import CPU_QUEUE
from worker.db_reporter import DatabaseReporter
from worker.process_limits import arm_hard_time_limit, disarm_hard_time_limit

log = logging.getLogger("tuneboard.worker")


@celery_app.task(name=TRAIN_TASK, acks_late=True)
def run_job(job_id: int, queue: str | None = None) -> None:
    """`job_id` is the job whose creation sent this message; the job run is the one the
    database picks next on `queue` in fair-share order (app/jobs/fair_share.py)."""
    sessions = get_sessionmaker()
    with sessions() as session:
        queue = queue or fair_share.queue_of(session, job_id) or CPU_QUEUE
        job = fair_share.claim_next(session, queue=queue)
        if job is None:
            log.info(
                "job %s is not queued (taken, finished or cancelled) and no other job waits "
                "on %s; skipping",
                job_id,
                queue,
            )
            return
    if job.id != job_id:
        log.info("message for job %s: job %s is next in fair-share order", job_id, job.id)
    job_id = job.id
    settings = get_settings()
    limit = jobs.time_limit_seconds(job, settings)
    # This child runs this one job; it ends itself at the job's own hard limit.
    arm_hard_time_limit(hard_time_limit(settings, limit))
    try:
        _run(job, sessions, limit)
    finally:
        disarm_hard_time_limit()


def _run(job: Job, sessions: sessionmaker[Session], limit: float) -> None:
    job_id = job.id
    reporter = DatabaseReporter(job_id, sessions, time_limit_seconds=limit)
    # torch is imported here, not at module level, so the worker's parent process stays
    # light and fork-safe; only the process that trains loads it.
    from worker.training.reporting import Cancelled

    try:
        result = _train(job, reporter)
    except Cancelled:
        _discard_checkpoint(job_id)  # a cancelled or timed-out job is never resumed
        if reporter.timed_out:
            reason = f"time limit: stopped after {limit:.0f} s of running (its time limit)"
            reporter.log(reason)
            _finish(reporter, status=JobStatus.failed, error=reason)
        else:
            reporter.log("cancelled by request")
            _finish(reporter, status=JobStatus.cancelled)
    except (OperationalError, InterfaceError):
        # The database stayed away longer than the reporter's retries. Nothing can be
        # recorded now; the checkpoint stays, the job's heartbeat stops, and housekeeping
        # re-queues it once the database is back: it resumes where it was saved.
        log.exception("job %s: database unreachable; left for re-queueing", job_id)
        raise
    except Exception as exc:  # noqa: BLE001 - any failure must reach the job page
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        log.exception("job %s failed", job_id)
        _discard_checkpoint(job_id)
        reporter.log("failed: " + reason + "\n" + traceback.format_exc(limit=5))
        _finish(reporter, status=JobStatus.failed, error=reason)
    else:
        _finish(
            reporter,
            status=JobStatus.succeeded,
            results=result.metrics,
            export_ready=result.export_path.is_file(),
        )


def _finish(reporter: DatabaseReporter, **outcome: Any) -> None:
    """The job's last write, retried like its others: a result must not be lost to a
    database that is restarting just as the job ends."""
    reporter.write("the outcome", lambda session: jobs.finish(session, reporter.job_id, **outcome))


def _discard_checkpoint(job_id: int) -> None:
    from worker.training import checkpoint

    checkpoint.remove(get_settings().jobs_dir / str(job_id))


def _train(job: Job, reporter: DatabaseReporter):  # noqa: ANN202 - TrainResult, imported lazily
    from worker.model_source import local_model_path, pick_device
    from worker.training.run import run_training

    settings = get_settings()
    reporter.log(f"loading dataset {job.dataset.name!r}")
    data = load_training_data(job.dataset, settings, seed=job.params["seed"])
    entry = catalog.resolve(job.model, settings)
    device = pick_device(Device(job.device))
    reporter.log(
        f"{len(data.train_idx)} train / {len(data.validation_idx)} validation / "
        f"{len(data.test_idx)} test examples, {len(data.label_names)} classes, device {device}"
    )
    model_path = local_model_path(entry)
    strategy = job.strategy
    if strategy is Strategy.auto:
        strategy = _choose_strategy(job, data, entry, model_path, device, reporter)
    params = resolve_params(job.params, strategy)
    return run_training(_spec(job, data, entry, model_path, strategy, params, device), reporter)


def _spec(job, data, entry, model_path, strategy, params, device):  # noqa: ANN001, ANN202
    from worker.training.spec import ImageExamples, TextExamples, TrainParams, TrainSpec

    settings = get_settings()
    # Unset settings take TrainParams' defaults; the time limit is the worker's own.
    params = {k: v for k, v in params.items() if k != "time_limit_minutes" and v is not None}
    if params.get("lora_target_modules") is not None:
        params = {**params, "lora_target_modules": tuple(params["lora_target_modules"])}
    examples = (
        ImageExamples(root=data.image_root, paths=data.texts, labels=data.labels)
        if data.image_root is not None
        else TextExamples(texts=data.texts, text_pairs=data.text_pairs, labels=data.labels)
    )
    return TrainSpec(
        job_id=job.id,
        model_id=entry.id,
        model_path=model_path,
        strategy=strategy.value,
        label_names=data.label_names,
        examples=examples,
        train_idx=data.train_idx,
        validation_idx=data.validation_idx,
        test_idx=data.test_idx,
        dataset_name=job.dataset.name,
        dataset_fingerprint=job.dataset.fingerprint,
        params=TrainParams(**params),
        output_dir=settings.jobs_dir / str(job.id),
        cache_dir=feature_cache_dir(settings, job.dataset.content_hash),
        device=device,
        torch_threads=settings.torch_threads,
        architecture=entry.architecture,
        checkpoint_every_seconds=settings.checkpoint_every_seconds,
    )


def _choose_strategy(job, data, entry, model_path, device, reporter) -> Strategy:  # noqa: ANN001
    """Resolve "auto": the rule first; a quick frozen-features probe only where its score
    can change the answer (its features stay cached for the job that follows)."""
    from worker.training.probe import probe_score

    counts = Counter(data.labels[i] for i in data.train_idx)
    facts = {
        "train_rows": len(data.train_idx),
        "min_per_class": min(counts.values()),
        "num_classes": len(data.label_names),
        "model_parameters": entry.parameters,
        "on_gpu": device == "cuda",
    }
    choice = recommend(**facts)
    if choice.wants_probe:
        reporter.log("auto: running a quick frozen-features probe")
        probe_params = resolve_params(job.params, Strategy.transfer_frozen)
        spec = _spec(job, data, entry, model_path, Strategy.transfer_frozen, probe_params, device)
        choice = recommend(**facts, probe_macro_f1=probe_score(spec, reporter))
    reporter.log(f"auto picked {choice.strategy.value}: {choice.reason}")
    with get_sessionmaker()() as session:
        jobs.record_strategy(session, job.id, strategy=choice.strategy, reason=choice.reason)
    return choice.strategy
