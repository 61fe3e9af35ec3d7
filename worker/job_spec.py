"""From a job's row to the training spec worker/training runs: its data and split, its
model on this machine, its device and settings, and for "auto" the strategy Auto picks
(app/jobs/recommend.py's rule, with a quick frozen-features probe where it can change the
answer). The Celery task (tasks.py) claims, runs and records; this builds what it runs."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from typing import Any

from app import catalog
from app.config import get_settings
from app.datasets.training_data import load_training_data
from app.db import get_sessionmaker
from app.jobs.artifacts import feature_cache_dir, job_dir
from app.jobs.models import Device, Job
from app.jobs.params import resolve_params
from app.jobs.recommend import recommend
from app.jobs.strategies import Strategy
from worker import job_records


def train(job: Job, reporter: Any, group: Any = None):  # noqa: ANN202 - TrainResult | None
    """Build the job's training spec (resolving Auto first) and run it: alone, or as one
    rank of `group` (worker/ddp_job.py; rank 0 returns the result, the others None)."""
    from worker.model_source import local_model_path, pick_device
    from worker.training.distributed import SINGLE
    from worker.training.run import run_rank

    group = group or SINGLE

    settings = get_settings()
    reporter.log(f"loading dataset {job.dataset.name!r}")
    data = load_training_data(job.dataset, settings, seed=job.params["seed"])
    entry = catalog.resolve(job.model, settings)
    device = pick_device(Device(job.device))
    reporter.log(
        f"{len(data.train_idx)} train / {len(data.validation_idx)} validation / "
        f"{len(data.test_idx)} test examples, {_outputs(job.dataset.task, data)}, "
        f"device {device}"
    )
    model_path = local_model_path(entry)
    strategy = job.strategy
    if strategy is Strategy.auto:  # rank 0 chooses (and records); the others follow
        choice = None
        if group.main:
            choice = choose_strategy(job, data, entry, model_path, device, reporter)
        strategy = group.share(choice)
    params = resolve_params(job.params, strategy, job.dataset.task)
    spec = spec_for(job, data, entry, model_path, strategy, params, device)
    if group.parallel and device == "cpu":  # the cores shared out among the ranks
        threads = spec.torch_threads or os.cpu_count() or 1
        spec = replace(spec, torch_threads=max(1, threads // group.world))
    return run_rank(spec, reporter, group)


def spec_for(job, data, entry, model_path, strategy, params, device):  # noqa: ANN001, ANN202
    from worker.training.spec import (
        ChatExamples,
        Examples,
        ImageExamples,
        TextExamples,
        TokenExamples,
        TrainParams,
        TrainSpec,
    )

    settings = get_settings()
    # Unset settings take TrainParams' defaults; the time limit is the worker's own.
    params = {k: v for k, v in params.items() if k != "time_limit_minutes" and v is not None}
    if params.get("lora_target_modules") is not None:
        params = {**params, "lora_target_modules": tuple(params["lora_target_modules"])}
    examples: Examples
    if job.dataset.task == "generation":
        examples = ChatExamples(conversations=data.texts)
    elif job.dataset.task == "token_classification":
        examples = TokenExamples(words=data.texts, labels=data.labels)
    elif data.image_root is not None:
        examples = ImageExamples(root=data.image_root, paths=data.texts, labels=data.labels)
    else:
        examples = TextExamples(texts=data.texts, text_pairs=data.text_pairs, labels=data.labels)
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
        output_dir=job_dir(settings, job.id),
        cache_dir=feature_cache_dir(settings, job.dataset.content_hash),
        device=device,
        torch_threads=settings.torch_threads,
        architecture=entry.architecture,
        checkpoint_every_seconds=settings.checkpoint_every_seconds,
        task=job.dataset.task,
    )


def _outputs(task: str, data) -> str:  # noqa: ANN001 - TrainingData
    if task == "regression":
        return f"target {data.label_names[0]!r}"
    if task == "token_classification":
        return f"{len(data.label_names)} tags"
    if task == "generation":
        return "conversations to learn to answer"
    noun = "labels" if task == "multi_label" else "classes"
    return f"{len(data.label_names)} {noun}"


def choose_strategy(job, data, entry, model_path, device, reporter) -> Strategy:  # noqa: ANN001
    """Resolve "auto": the rule first; a quick frozen-features probe only where its score
    can change the answer (its features stay cached for the job that follows)."""
    from worker.training.probe import probe_score

    task = job.dataset.task
    if task == "multi_label":
        counts = Counter(j for i in data.train_idx for j in data.labels[i])
    elif task == "token_classification":  # sentences holding each tag
        counts = Counter(t for i in data.train_idx for t in set(data.labels[i]))
    elif task == "classification":
        counts = Counter(data.labels[i] for i in data.train_idx)
    else:  # regression and generation: no classes; the rows (conversations) are what
        # there is to learn from, and generation's rule never asks for a probe
        counts = Counter({0: len(data.train_idx)})
    facts = {
        "train_rows": len(data.train_idx),
        "min_per_class": min(counts.values()),
        "num_classes": len(data.label_names),
        "model_parameters": entry.parameters,
        "on_gpu": device == "cuda",
        "task": task,
    }
    choice = recommend(**facts)
    if choice.wants_probe:
        reporter.log("auto: running a quick frozen-features probe")
        probe_params = resolve_params(job.params, Strategy.transfer_frozen)
        spec = spec_for(
            job, data, entry, model_path, Strategy.transfer_frozen, probe_params, device
        )
        choice = recommend(**facts, probe_score=probe_score(spec, reporter))
    reporter.log(f"auto picked {choice.strategy.value}: {choice.reason}")
    with get_sessionmaker()() as session:
        job_records.record_strategy(session, job.id, strategy=choice.strategy, reason=choice.reason)
    return choice.strategy
