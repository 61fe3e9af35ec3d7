"""LoRA through PEFT: adapters on the attention projections, the head trained in full, and
an export with the adapters merged back in, so the published checkpoint needs no PEFT.

peft is imported inside the functions: it takes about two seconds to import, and only LoRA
jobs should pay for that.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel

from worker.training.spec import FINETUNE_LORA, TrainParams
from worker.training.text_model import head_of, layout_of


def add_lora(model: PreTrainedModel, params: TrainParams) -> Any:
    """Wrap `model` (in place) in a PEFT model where only the adapters and the head train.

    The head is new and sized for these labels, so it cannot stay frozen; PEFT's
    `modules_to_save` trains a copy of it and swaps the copy in when merging.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    targets = params.lora_target_modules or layout_of(model, FINETUNE_LORA).lora_targets
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=params.lora_rank,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=list(targets),
        modules_to_save=list(head_of(model, FINETUNE_LORA).modules),
    )
    return get_peft_model(model, config)


def merged(peft_model: Any) -> PreTrainedModel:
    """The plain model with W + (alpha/r)·B·A folded into each adapted weight and the
    trained head copies in place of the originals. Consumes the adapters: call it once,
    after testing."""
    model: PreTrainedModel = peft_model.merge_and_unload()
    return model
