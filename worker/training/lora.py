"""LoRA through PEFT: adapters on the model's projections (attention query/value for
transformers, pointwise convolutions for the packaged CNNs), the head trained in full, and an
export with the adapters merged back in, so the published weights need no PEFT.

peft is imported inside the functions: it takes about two seconds to import, and only LoRA
jobs should pay for that.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from worker.training.classifier import Classifier
from worker.training.spec import TrainParams


def add_lora(clf: Classifier, params: TrainParams, strategy: str) -> Any:
    """Wrap `clf.model` (in place) in a PEFT model where only the adapters and the head
    train.

    The head is new and sized for these labels, so it cannot stay frozen; PEFT's
    `modules_to_save` trains a copy of it and swaps the copy in when merging.
    """
    from peft import LoraConfig, get_peft_model

    default_targets, task_type = clf.lora_targets(strategy)
    config = LoraConfig(
        task_type=task_type,
        r=params.lora_rank,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=list(params.lora_target_modules or default_targets),
        modules_to_save=list(clf.head_modules),
    )
    return get_peft_model(clf.model, config)


def merged(peft_model: Any) -> nn.Module:
    """The plain model with W + (alpha/r)·B·A folded into each adapted weight and the
    trained head copies in place of the originals. Consumes the adapters: call it once,
    after testing."""
    model: nn.Module = peft_model.merge_and_unload()
    return model
