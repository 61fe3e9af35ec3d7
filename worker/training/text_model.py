"""Load a pretrained text classifier and know where its backbone ends and its head begins.

The frozen-features strategy trains the model's *own* head modules on cached features, so
the weights it exports are an ordinary checkpoint of the same class and load with
`AutoModelForSequenceClassification`. That needs, per architecture, three facts: which
modules form the head, which hidden state the head reads, and how the head's forward runs
on that state alone. Only the architectures listed in HEADS are known; others fail clearly.
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


def head_of(model: PreTrainedModel) -> Head:
    model_type = model.config.model_type
    head = HEADS.get(model_type)
    if head is None:
        raise ValueError(
            f"transfer_frozen does not know the classification head of {model_type!r} models "
            f"(known: {', '.join(sorted(HEADS))}); use finetune_full for this model"
        )
    if model_type == "bert" and getattr(model.base_model, "pooler", None) is None:
        raise ValueError("this BERT model has no pooler, which its classification head reads")
    return head


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
