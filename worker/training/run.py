"""run_training: one job (any task, text or images) from spec to published export.

load the classifier (classifier.py: model + how rows become inputs) → the strategy's stage
(strategies.py):
  transfer_frozen: backbone features (cached on disk) → the model's own head on them, fitted
                   to convergence with an L2 strength chosen on validation (head_fit.py)
  transfer_top_k:  train the top k blocks + head
  finetune_full:   train every parameter (text: length-grouped, dynamically padded batches;
                   images: random resized crops and flips unless turned off)
  finetune_lora:   train LoRA adapters + head; the export has the adapters merged in
  lp_ft:           transfer_frozen's fitted head, then every parameter from that head
→ keep the best validation epoch by the task's headline (frozen: the chosen L2) → what the
task chooses on validation (multi-label thresholds) → validation predictions → test → the
task's finish (regression folds its scale into the head) → export.zip
"""

from __future__ import annotations

import random
import resource
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.training import checkpoint, job_files
from worker.training.classifier import count_params, load_classifier
from worker.training.distributed import SINGLE, Group
from worker.training.evaluation import predict_logits
from worker.training.export import export_model, write_json
from worker.training.head_fit import fit_stage, val_values
from worker.training.loop import Checkpoints, FitOutcome, fit, outcome_from
from worker.training.reporting import Reporter
from worker.training.spec import (
    LP_FT,
    TRANSFER_FROZEN,
    ImageExamples,
    TrainSpec,
)
from worker.training.strategies import PREPARE, Stage, all_layers, head_on_features


@dataclass
class TrainResult:
    metrics: dict[str, Any]  # JSON-serialisable; also written to the export as metrics.json
    export_path: Path  # the published ZIP


def run_training(spec: TrainSpec, reporter: Reporter) -> TrainResult:
    """Train, test and export one job; raises `Cancelled` when the reporter asks to stop
    (nothing is published then) and ValueError for a spec or model it cannot run."""
    result = run_rank(spec, reporter, SINGLE)
    assert result is not None  # a lone run is its own rank 0
    return result


def run_rank(spec: TrainSpec, reporter: Reporter, group: Group) -> TrainResult | None:
    """One rank of a data-parallel run of the job (distributed.py), or the whole job alone
    (SINGLE). Every rank trains its share of each batch; rank 0 then tests and exports
    alone and returns the result, the others return None once training is done."""
    started = time.perf_counter()
    spec.check()
    device = resolve_device(spec.device)
    if spec.torch_threads > 0:
        torch.set_num_threads(spec.torch_threads)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # one worker process runs many jobs
    seed_everything(spec.params.seed)  # before loading: the new head's init is random
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    params = spec.params
    images = isinstance(spec.examples, ImageExamples)
    # None for frozen features, whose head is fitted rather than stepped (head_fit.py).
    learning_rate = (
        None
        if spec.strategy == TRANSFER_FROZEN
        else params.learning_rate_for(spec.strategy, images=images)
    )
    task = spec.job_task()
    on = f"{group.world} × {device}, data-parallel" if group.parallel else f"device {device}"
    reporter.log(f"job {spec.job_id}: {spec.task}, {spec.strategy} on {spec.model_id}, {on}")
    if group.parallel and spec.strategy == TRANSFER_FROZEN:
        # A head fitted to convergence on cached features takes no steps to spread: rank 0
        # fits it alone, in seconds, and the other devices are let go.
        if not group.main:
            return None
        reporter.log("frozen features: the head is fitted on one device")
        group = SINGLE

    clf = load_classifier(spec, device)
    task.attach(clf, main=group.main)
    # The model's rows for each split: the examples, or (entity tagging) their windows.
    train_rows, val_rows, test_rows = (
        task.rows(idx) for idx in (spec.train_idx, spec.validation_idx, spec.test_idx)
    )
    # A checkpoint of this very job (a killed worker's) is resumed; the chart drops whatever
    # the killed run drew after it, so the curves continue from the checkpoint.
    ckpt_path = checkpoint.path_in(spec.output_dir)
    identity = checkpoint.identity(
        {
            "strategy": spec.strategy,
            "task": spec.task,
            # Not the devices: they only split each batch (distributed.py), so a checkpoint
            # resumes on any number of them.
            "params": {k: v for k, v in asdict(params).items() if k != "devices"},
            "model": [spec.model_id, spec.model_path],
            "data": [spec.dataset_fingerprint, spec.label_names, len(spec.train_idx)],
        }
    )
    state = checkpoint.load(ckpt_path)
    if state is not None and state["meta"]["identity"] != identity:
        state = None
    if state is not None:
        reporter.rewind(step=state["meta"]["run_step"])

    def checkpoints(stage: str, info: dict[str, Any]) -> Checkpoints:
        return Checkpoints(ckpt_path, spec.checkpoint_every_seconds, identity, stage, info)

    def resume_for(stage: str) -> dict[str, Any] | None:
        return state if state is not None and state["meta"]["stage"] == stage else None

    def fitted_head(head: Stage, *, prefix: str, **more: Any) -> FitOutcome:
        """The head on cached features, fitted to convergence (head_fit.py)."""
        fitted = fit_stage(head, spec, task, device, reporter, **more)
        head.info.update(fitted.info(prefix))
        return fitted.outcome

    probe: FitOutcome | None = None
    if spec.strategy == LP_FT:
        # Stage 1 is exactly transfer_frozen's (same feature cache and fit); stage 2 then
        # starts from a trained head, so its first updates do not wreck the pretrained
        # features. The probe is drawn at epoch 0, where the fine-tuning curves start from.
        # In a parallel run rank 0 fits the probe alone; DDP then starts every rank from its
        # weights, and the probe's outcome is shared for the curves.
        reporter.log("stage 1/2: a head fitted on frozen features")
        head_info: dict[str, Any] = {}
        if group.main:
            head = head_on_features(spec, clf, device, reporter)
            if resume_for("training") is not None:  # the probe finished before the checkpoint
                probe = outcome_from(resume_for("training") or {})
                assert probe is not None
                saved = (resume_for("training") or {})["meta"].get("info", {})
                head.info.update({k: v for k, v in saved.items() if k.startswith("probe_")})
            else:
                probe = fitted_head(head, prefix="probe", phase="probe", report_path=False)
                _report_probe(reporter, probe)
                probe = replace(probe, best_epoch=0, epochs_run=0, steps=0)
            head_info = head.info
        probe = group.share(probe)
        assert probe is not None
        reporter.log(
            f"stage 2/2: fine-tuning every layer from the fitted head, {params.epochs} epochs"
        )
        stage = all_layers(spec, clf, device, reporter)
        key = task.headline.key
        stage.info.update(head_info, **{f"probe_val_{key}": probe.best_validation[key]})
    else:
        stage = PREPARE[spec.strategy](spec, clf, device, reporter)

    trainable_params, total_params = count_params(stage.trained)
    reporter.log(f"training {trainable_params:,} of {total_params:,} parameters")
    if spec.strategy == TRANSFER_FROZEN:
        reporter.log(
            "frozen features: the head is fitted to convergence (L-BFGS, L2 chosen on "
            "validation); epochs, learning rate, patience and warmup do not apply"
        )
        outcome = fitted_head(stage, prefix="head")
    else:
        assert learning_rate is not None
        outcome = fit(
            stage.trained,
            stage.forward,
            stage.source,
            task,
            train_idx=train_rows.tolist(),
            validation_idx=val_rows.tolist(),
            params=params,
            learning_rate=learning_rate,
            device=device,
            reporter=reporter,
            after=probe,
            checkpoints=checkpoints("training", stage.info),
            resume=resume_for("training"),
            # A fresh head may need larger steps (the classifier says); lp_ft's is fitted.
            head_modules=clf.head_modules,
            head_learning_rate=None if spec.strategy == LP_FT else clf.head_learning_rate,
            group=group,
        )
        if not group.main:
            return None  # rank 0 tests and exports the weights every rank now holds

    # The model now holds the best epoch's weights, whose validation outputs fit kept.
    stage.trained.eval()
    chosen = task.tune(outcome.best_logits, val_rows)  # before anything is scored with it
    write_json(
        job_files.validation_predictions(spec.output_dir),
        task.predictions(outcome.best_logits, val_rows),
    )
    test_logits = predict_logits(
        stage.forward,
        stage.source,
        test_rows,
        batch_size=2 * params.batch_size,
        device=device,
        reporter=reporter,
        phase="evaluating",
    )
    test = task.report(test_logits, test_rows)
    seconds = outcome.train_seconds
    if spec.strategy == TRANSFER_FROZEN:
        # Examples/s of the whole adaptation: the features pass is its real cost.
        seconds += stage.info["feature_seconds"]
    # lp_ft: the fine-tuning stage's steps alone, comparable with finetune_full; what its
    # probe cost is in feature_seconds and probe_seconds.
    headline = task.headline
    metrics: dict[str, Any] = {
        **{f"test_{k}": v for k, v in test["scores"].items()},
        **test["views"],
        "headline_metric": f"test_{headline.key}",
        "headline_higher_is_better": headline.higher_is_better,
        "best_epoch": outcome.best_epoch,
        "epochs_run": outcome.epochs_run,
        "stopped_early": outcome.stopped_early,
        # At the kept weights: what ranked the epochs (before any threshold was tuned).
        **{f"val_{k}": v for k, v in outcome.best_validation.items()},
        **chosen,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "train_examples_per_second": round(outcome.train_examples / max(seconds, 1e-9), 3),
        **stage.info,
    }
    if not images and spec.strategy != TRANSFER_FROZEN:
        # Tokens through the training steps: the rows' real lengths, padding not counted.
        epochs = outcome.train_examples / max(len(train_rows), 1)
        tokens = epochs * float(stage.source.lengths[train_rows].sum())
        metrics["train_tokens_per_second"] = round(tokens / max(seconds, 1e-9), 1)
    kept = (
        f"head L2 {metrics['head_l2']:.0e}"
        if "head_l2" in metrics
        else f"best epoch {outcome.best_epoch}"
    )
    reporter.log(
        "test "
        + ", ".join(f"{k} {v:.4f}" for k, v in test["scores"].items() if k != "loss")
        + f" ({kept})"
    )

    reporter.progress(step=0, total_steps=1, phase="exporting")
    metrics["peak_memory_bytes"] = peak_memory_bytes(device)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    exported = stage.exported()
    export_path = export_model(
        spec,
        clf,
        exported,
        metrics=metrics,
        learning_rate=learning_rate,
        config=task.finish(exported),
    )
    reporter.progress(step=1, total_steps=1, phase="exporting")
    checkpoint.remove(spec.output_dir)  # published: nothing left to resume
    return TrainResult(metrics=metrics, export_path=export_path)


def _report_probe(reporter: Reporter, probe: FitOutcome) -> None:
    """lp_ft's fitted probe as the curves' epoch 0: where fine-tuning starts from."""
    reporter.metrics(step=0, epoch=0.0, values=val_values(probe.best_validation))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; expected 'cpu', 'cuda' or 'auto'")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # Linux reports ru_maxrss in KiB; it is the process's peak, not this job's alone.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
