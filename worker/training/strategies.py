"""Each strategy is one entry here: which parameters train, on which rows, through which
forward, and what gets exported.

  transfer_frozen  the model's own head, on backbone features cached on disk
  transfer_top_k   the top k encoder blocks + head, on tokens; embeddings and lower blocks
                   frozen
  finetune_full    every parameter, on tokens
  finetune_lora    LoRA adapters on the attention projections + head (PEFT), on tokens;
                   exported with the adapters merged
  lp_ft            transfer_frozen's stage, then finetune_full's from the trained head
                   (run.py runs the two stages one after the other)

The shared loop (loop.fit) trains whatever has requires_grad in `Stage.trained`, so the
strategies differ only in what they freeze and what `forward` reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

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
from worker.training.text_data import BatchSource, FeatureRows, Tokens
from worker.training.text_model import (
    encoder_blocks,
    freeze_all_but,
    head_of,
    layout_of,
    resolve_top_k,
)


@dataclass
class Stage:
    trained: nn.Module  # what loop.fit trains: its parameters with requires_grad
    source: BatchSource  # token rows, or cached feature rows
    forward: Forward  # a batch from `source` → logits
    exported: Callable[[], PreTrainedModel]  # the checkpoint to publish, once trained
    info: dict[str, Any] = field(default_factory=dict)  # extra metrics of this strategy


def head_on_features(
    spec: TrainSpec,
    model: PreTrainedModel,
    tokens: Tokens,
    device: torch.device,
    reporter: Reporter,
) -> Stage:
    """The backbone runs once per row (or not at all on a cache hit); the model's own head
    then trains on the cached hidden states, so the export is an ordinary checkpoint."""
    head = head_of(model, spec.strategy)
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
        rows=len(spec.examples.texts),
        key=key,
        cache_dir=spec.cache_dir,
        batch_size=2 * spec.params.batch_size,
        device=device,
        reporter=reporter,
    )

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return head.forward(model, batch["features"])

    info = {"feature_cache_hit": hit, "feature_seconds": round(seconds, 3)}
    return Stage(model, FeatureRows(features), forward, lambda: model, info)


def top_k_blocks(
    spec: TrainSpec,
    model: PreTrainedModel,
    tokens: Tokens,
    device: torch.device,
    reporter: Reporter,
) -> Stage:
    """Train the top k encoder blocks and the head. Every step still runs the frozen lower
    blocks forward, but nothing there requires grad, so autograd records nothing below the
    first trained block: no activations kept, no backward through it."""
    blocks_path = layout_of(model, spec.strategy).blocks
    num_blocks = len(encoder_blocks(model, spec.strategy))
    k = resolve_top_k(spec.params.top_k, num_blocks)
    top = tuple(f"{blocks_path}.{i}" for i in range(num_blocks - k, num_blocks))
    freeze_all_but(model, top + head_of(model, spec.strategy).modules)
    reporter.log(f"training the top {k} of {num_blocks} encoder blocks and the head")
    return Stage(
        model, tokens(), _tokens_forward(model), lambda: model, {"top_k": k, "blocks": num_blocks}
    )


def all_layers(
    spec: TrainSpec,
    model: PreTrainedModel,
    tokens: Tokens,
    device: torch.device,
    reporter: Reporter,
) -> Stage:
    model.requires_grad_(True)
    return Stage(model, tokens(), _tokens_forward(model), lambda: model)


def lora_adapters(
    spec: TrainSpec,
    model: PreTrainedModel,
    tokens: Tokens,
    device: torch.device,
    reporter: Reporter,
) -> Stage:
    peft_model = add_lora(model, spec.params)
    targets = sorted(peft_model.peft_config["default"].target_modules)
    reporter.log(f"LoRA rank {spec.params.lora_rank} on {', '.join(targets)}")
    return Stage(peft_model, tokens(), _tokens_forward(peft_model), lambda: merged(peft_model))


def _tokens_forward(model: nn.Module) -> Forward:
    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).logits

    return forward


# lp_ft has no entry: it is head_on_features then all_layers, run in sequence by run.py.
PREPARE: dict[str, Callable[..., Stage]] = {
    TRANSFER_FROZEN: head_on_features,
    TRANSFER_TOP_K: top_k_blocks,
    FINETUNE_FULL: all_layers,
    FINETUNE_LORA: lora_adapters,
}
