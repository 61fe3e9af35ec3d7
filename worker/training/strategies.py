"""Each strategy is one entry here: which parameters train, on which rows, through which
forward, and what gets exported.

  transfer_frozen  the model's own head, on backbone features cached on disk
  transfer_top_k   the top k blocks + head; embeddings/stem and lower blocks frozen
  finetune_full    every parameter
  finetune_lora    LoRA adapters (PEFT) + head; exported with the adapters merged
  lp_ft            transfer_frozen's stage, then finetune_full's from the trained head
                   (run.py runs the two stages one after the other)

The shared loop (loop.fit) trains whatever has requires_grad in `Stage.trained`, so the
strategies differ only in what they freeze and what `forward` reads. What they need of the
model (its head, its blocks, its rows) comes from a classifier.Classifier, so the same code
serves text and images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from worker.training import job_files
from worker.training.classifier import (
    Batch,
    Classifier,
    freeze_all_but,
    resolve_top_k,
)
from worker.training.evaluation import Forward
from worker.training.feature_cache import cache_key, cached_features
from worker.training.lora import add_lora, merged
from worker.training.reporting import Reporter
from worker.training.spec import (
    FINETUNE_FULL,
    FINETUNE_LORA,
    TRANSFER_FROZEN,
    TRANSFER_TOP_K,
    TrainSpec,
)
from worker.training.text_data import BatchSource, FeatureRows


@dataclass
class Stage:
    trained: nn.Module  # what loop.fit trains: its parameters with requires_grad
    source: BatchSource  # token rows, or cached feature rows
    forward: Forward  # a batch from `source` → logits
    exported: Callable[[], nn.Module]  # the model to publish, once trained
    info: dict[str, Any] = field(default_factory=dict)  # extra metrics of this strategy


def augmented_rows(spec: TrainSpec) -> frozenset[int]:
    """Training rows that get random augmentation when the backbone trains: all of them
    unless the job turned it off (images only; text rows ignore it)."""
    return frozenset(spec.train_idx) if spec.params.augment is not False else frozenset()


def head_on_features(
    spec: TrainSpec, clf: Classifier, device: torch.device, reporter: Reporter
) -> Stage:
    """The backbone runs once per row (or not at all on a cache hit); the model's own head
    then trains on the cached features, so the export is an ordinary checkpoint."""
    model = clf.model
    freeze_all_but(model, clf.head_modules)
    if spec.params.augment:
        reporter.log(
            "augmentation is off for frozen features: each augmented image would need a fresh "
            "backbone pass, which the feature cache exists to avoid"
        )
    key = cache_key(
        model_id=spec.model_id,
        model_path=spec.model_path,
        dataset_fingerprint=spec.dataset_fingerprint,
        preprocessing=clf.feature_identity(),
    )
    features, hit, seconds = cached_features(
        clf,
        # Rows of the model: examples, or (entity tagging) the windows of the sentences.
        rows=getattr(clf, "row_count", len(spec.examples)),
        key=key,
        cache_dir=spec.cache_dir,
        batch_size=2 * spec.params.batch_size,
        device=device,
        reporter=reporter,
    )

    def forward(batch: Batch) -> torch.Tensor:
        return clf.head_logits(batch["features"])

    info = {"feature_cache_hit": hit, "feature_seconds": round(seconds, 3)}
    return Stage(model, FeatureRows(features), forward, lambda: model, info)


def top_k_blocks(
    spec: TrainSpec, clf: Classifier, device: torch.device, reporter: Reporter
) -> Stage:
    """Train the top k blocks and the head. Every step still runs the frozen lower blocks
    forward, but nothing there requires grad, so autograd records nothing below the first
    trained block: no activations kept, no backward through it."""
    blocks = clf.blocks(spec.strategy)
    k = resolve_top_k(spec.params.top_k, len(blocks))
    top = tuple(path for block in blocks[len(blocks) - k :] for path in block)
    freeze_all_but(clf.model, top + clf.head_modules)
    reporter.log(f"training the top {k} of {len(blocks)} blocks and the head")
    info = {"top_k": k, "blocks": len(blocks)}
    return Stage(clf.model, _rows(spec, clf), _forward(clf, clf.model), lambda: clf.model, info)


def all_layers(spec: TrainSpec, clf: Classifier, device: torch.device, reporter: Reporter) -> Stage:
    clf.model.requires_grad_(True)
    return Stage(clf.model, _rows(spec, clf), _forward(clf, clf.model), lambda: clf.model)


def lora_adapters(
    spec: TrainSpec, clf: Classifier, device: torch.device, reporter: Reporter
) -> Stage:
    peft_model = add_lora(clf, spec.params, spec.strategy)
    targets = sorted(peft_model.peft_config["default"].target_modules)
    shown = ", ".join(targets[:8]) + (f" and {len(targets) - 8} more" if len(targets) > 8 else "")
    reporter.log(f"LoRA rank {spec.params.lora_rank} on {shown}")

    def exported() -> nn.Module:
        # The adapters in PEFT's own format first (export.py ships them beside the merged
        # weights): merging consumes them.
        peft_model.save_pretrained(job_files.adapter_dir(spec.output_dir))
        return merged(peft_model)

    return Stage(peft_model, _rows(spec, clf), _forward(clf, peft_model), exported)


def _rows(spec: TrainSpec, clf: Classifier) -> BatchSource:
    return clf.rows(augment_idx=augmented_rows(spec))


def _forward(clf: Classifier, model: nn.Module) -> Forward:
    def forward(batch: Batch) -> torch.Tensor:
        return clf.logits(model, batch)

    return forward


# lp_ft has no entry: it is head_on_features then all_layers, run in sequence by run.py.
PREPARE: dict[str, Callable[..., Stage]] = {
    TRANSFER_FROZEN: head_on_features,
    TRANSFER_TOP_K: top_k_blocks,
    FINETUNE_FULL: all_layers,
    FINETUNE_LORA: lora_adapters,
}
