"""run_training: one text-classification job from spec to published export.

load model and tokenizer → tokenise every row once →
  transfer_frozen: backbone features (cached on disk) → train the model's own head on them
  finetune_full:   train every parameter on length-grouped, dynamically padded batches
→ keep the best validation epoch → test → export.zip
"""

from __future__ import annotations

import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from worker.training.evaluation import Forward, full_report, predict_logits
from worker.training.export import export_model
from worker.training.feature_cache import cache_key, cached_features
from worker.training.loop import fit
from worker.training.reporting import Reporter
from worker.training.spec import TRANSFER_FROZEN, TrainSpec
from worker.training.text_data import BatchSource, FeatureRows, TokenizedTexts, tokenize
from worker.training.text_model import count_params, freeze_all_but, head_of, load_classifier


@dataclass
class TrainResult:
    metrics: dict[str, Any]  # JSON-serialisable; also written to the export as metrics.json
    export_path: Path  # the published ZIP


def run_training(spec: TrainSpec, reporter: Reporter) -> TrainResult:
    """Train, test and export one job; raises `Cancelled` when the reporter asks to stop
    (nothing is published then) and ValueError for a spec or model it cannot run."""
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
    learning_rate = params.learning_rate_for(spec.strategy)
    labels = np.asarray(spec.examples.labels, dtype=np.int64)
    reporter.log(f"job {spec.job_id}: {spec.strategy} on {spec.model_id}, device {device}")

    tokenizer, model = load_classifier(spec.model_path, spec.label_names)
    model.to(device)  # type: ignore[arg-type]  # transformers wraps .to; mypy loses the signature
    tokens = tokenize(tokenizer, spec.examples, params.max_length)

    if spec.strategy == TRANSFER_FROZEN:
        source, forward, extra = prepare_transfer_frozen(spec, model, tokens, device, reporter)
    else:
        source, forward, extra = prepare_finetune_full(model, tokens)

    trainable_params, total_params = count_params(model)
    reporter.log(f"training {trainable_params:,} of {total_params:,} parameters")
    outcome = fit(
        model,
        forward,
        source,
        labels,
        train_idx=spec.train_idx,
        validation_idx=spec.validation_idx,
        params=params,
        learning_rate=learning_rate,
        device=device,
        reporter=reporter,
    )

    model.eval()
    test_logits = predict_logits(
        forward,
        source,
        spec.test_idx,
        batch_size=2 * params.batch_size,
        device=device,
        reporter=reporter,
        phase="evaluating",
    )
    test = full_report(test_logits, labels[np.asarray(spec.test_idx)], spec.label_names)
    seconds = outcome.train_seconds
    if spec.strategy == TRANSFER_FROZEN:
        extra["head_seconds"] = round(outcome.seconds, 3)
        # Examples/s of the whole adaptation: the features pass is its real cost.
        seconds += extra["feature_seconds"]
    metrics: dict[str, Any] = {
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        "test_loss": test["loss"],
        "per_class": test["per_class"],
        "confusion_matrix": test["confusion_matrix"],
        "labels": test["labels"],
        "best_epoch": outcome.best_epoch,
        "val_accuracy": outcome.best_validation["accuracy"],
        "val_macro_f1": outcome.best_validation["macro_f1"],
        "val_loss": outcome.best_validation["loss"],
        "trainable_params": trainable_params,
        "total_params": total_params,
        "train_examples_per_second": round(outcome.train_examples / max(seconds, 1e-9), 3),
        **extra,
    }
    reporter.log(
        f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f} "
        f"(best epoch {outcome.best_epoch})"
    )

    reporter.progress(step=0, total_steps=1, phase="exporting")
    metrics["peak_memory_bytes"] = peak_memory_bytes(device)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    export_path = export_model(spec, model, tokenizer, metrics=metrics, learning_rate=learning_rate)
    reporter.progress(step=1, total_steps=1, phase="exporting")
    return TrainResult(metrics=metrics, export_path=export_path)


def prepare_transfer_frozen(
    spec: TrainSpec,
    model: PreTrainedModel,
    tokens: TokenizedTexts,
    device: torch.device,
    reporter: Reporter,
) -> tuple[BatchSource, Forward, dict[str, Any]]:
    """The backbone runs once per row (or not at all on a cache hit); the model's own head
    then trains on the cached hidden states, so the export is an ordinary checkpoint."""
    head = head_of(model)
    freeze_all_but(model, head.modules)
    key = cache_key(
        model_id=spec.model_id,
        model_path=spec.model_path,
        dataset_fingerprint=spec.dataset_fingerprint,
        max_length=spec.params.max_length,
    )
    features, hit, seconds = cached_features(
        model,
        tokens,
        key=key,
        cache_dir=spec.cache_dir,
        batch_size=2 * spec.params.batch_size,
        device=device,
        reporter=reporter,
    )

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return head.forward(model, batch["features"])

    timing = {"feature_cache_hit": hit, "feature_seconds": round(seconds, 3)}
    return FeatureRows(features), forward, timing


def prepare_finetune_full(
    model: PreTrainedModel, tokens: TokenizedTexts
) -> tuple[BatchSource, Forward, dict[str, Any]]:
    model.requires_grad_(True)

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).logits

    return tokens, forward, {}


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
