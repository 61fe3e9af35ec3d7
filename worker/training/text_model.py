"""Load a pretrained text classifier and know where its backbone ends and its head begins.

The frozen-features strategy trains the model's *own* head modules on cached features, so
the weights it exports are an ordinary checkpoint of the same class and load with
`AutoModelForSequenceClassification`. That needs, per architecture, three facts: which
modules form the head, which hidden state the head reads, and how the head's forward runs
on that state alone. The top-k and LoRA strategies need two more: where the stack of
encoder blocks is, and which projections LoRA adapts. Only the architectures listed in
HEADS and LAYOUTS are known; others fail clearly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel


def load_classifier(model_path: str, label_names: list[str]) -> tuple[Any, PreTrainedModel]:
    """Tokenizer and model with a new classification head sized for `label_names`."""
    tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        use_safetensors=True,  # never unpickle a checkpoint
        trust_remote_code=False,
        dtype=torch.float32,  # master weights in fp32 whatever the checkpoint holds
    )
    return tokenizer, model


@dataclass(frozen=True)
class Head:
    """The classification head of one architecture, runnable on cached features."""

    modules: tuple[str, ...]  # attribute paths of the modules that train when frozen
    # logits from the first token's last hidden state, through the model's own modules
    forward: Callable[[Any, torch.Tensor], torch.Tensor]


def _bert_head(model: Any, cls: torch.Tensor) -> torch.Tensor:
    # BertPooler reads hidden_states[:, 0]: give it a sequence of one.
    return model.classifier(model.dropout(model.bert.pooler(cls[:, None])))


def _distilbert_head(model: Any, cls: torch.Tensor) -> torch.Tensor:
    return model.classifier(model.dropout(F.relu(model.pre_classifier(cls))))


def _roberta_head(model: Any, cls: torch.Tensor) -> torch.Tensor:
    # RobertaClassificationHead reads features[:, 0, :] itself.
    return model.classifier(cls[:, None])


HEADS: dict[str, Head] = {
    "bert": Head(("bert.pooler", "classifier"), _bert_head),
    "distilbert": Head(("pre_classifier", "classifier"), _distilbert_head),
    "roberta": Head(("classifier",), _roberta_head),
    "xlm-roberta": Head(("classifier",), _roberta_head),
    "camembert": Head(("classifier",), _roberta_head),
}


@dataclass(frozen=True)
class Layout:
    """Where an architecture keeps what the top-k and LoRA strategies touch."""

    blocks: str  # attribute path of the ModuleList of encoder blocks, bottom to top
    lora_targets: tuple[str, ...]  # attention projections LoRA adapts by default


LAYOUTS: dict[str, Layout] = {
    "bert": Layout("bert.encoder.layer", ("query", "value")),
    "distilbert": Layout("distilbert.transformer.layer", ("q_lin", "v_lin")),
    "roberta": Layout("roberta.encoder.layer", ("query", "value")),
    "xlm-roberta": Layout("roberta.encoder.layer", ("query", "value")),
    "camembert": Layout("roberta.encoder.layer", ("query", "value")),
}


def head_of(model: PreTrainedModel, strategy: str = "transfer_frozen") -> Head:
    model_type = model.config.model_type
    head = HEADS.get(model_type)
    if head is None:
        raise ValueError(
            f"{strategy} does not know the classification head of {model_type!r} models "
            f"(known: {', '.join(sorted(HEADS))}); use finetune_full for this model"
        )
    if model_type == "bert" and getattr(model.base_model, "pooler", None) is None:
        raise ValueError("this BERT model has no pooler, which its classification head reads")
    return head


def layout_of(model: PreTrainedModel, strategy: str) -> Layout:
    model_type = model.config.model_type
    layout = LAYOUTS.get(model_type)
    if layout is None:
        raise ValueError(
            f"{strategy} does not know where the encoder blocks of {model_type!r} models are "
            f"(known: {', '.join(sorted(LAYOUTS))}); use finetune_full for this model"
        )
    return layout


def encoder_blocks(model: PreTrainedModel, strategy: str) -> nn.ModuleList:
    blocks = model.get_submodule(layout_of(model, strategy).blocks)
    assert isinstance(blocks, nn.ModuleList), type(blocks)
    return blocks


def resolve_top_k(top_k: int | None, num_blocks: int) -> int:
    """The blocks transfer_top_k trains: as asked, or a third of them (at least one)."""
    if top_k is None:
        return max(1, round(num_blocks / 3))
    if top_k > num_blocks:
        raise ValueError(
            f"top_k is {top_k} but the model has only {num_blocks} encoder blocks; "
            f"pick 1..{num_blocks} (or finetune_full to train everything)"
        )
    return top_k


def first_token_state(model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The hidden state every head in HEADS reads: the last layer at the first token."""
    return model.base_model(**inputs).last_hidden_state[:, 0]


def freeze_all_but(model: nn.Module, module_paths: tuple[str, ...]) -> None:
    model.requires_grad_(False)
    for path in module_paths:
        model.get_submodule(path).requires_grad_(True)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
