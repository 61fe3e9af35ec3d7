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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from worker.training.spec import TextExamples, TrainSpec
from worker.training.text_data import BatchSource, tokenize_once


def load_text_model(model_path: str, label_names: list[str]) -> tuple[Any, PreTrainedModel]:
    """Tokenizer and model with a new classification head sized for `label_names`.

    Only safetensors weights and transformers' own code are ever loaded: a folder with a
    pickled checkpoint only, or one asking for its own code, raises ValueError saying so."""
    from worker.training.model_files import check_model_folder

    if Path(model_path).is_dir():
        check_model_folder(model_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_path, use_fast=True, trust_remote_code=False
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            model_path,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            use_safetensors=True,  # never unpickle a checkpoint
            trust_remote_code=False,
            dtype=torch.float32,  # master weights in fp32 whatever the checkpoint holds
        )
    except OSError as exc:
        if "safetensors" not in str(exc):
            raise
        # use_safetensors=True refuses to fall back to pytorch_model.bin: say why.
        raise ValueError(
            f"the model at {model_path} has no safetensors weights (model.safetensors); "
            "pickled checkpoints (pytorch_model.bin) are never loaded"
        ) from exc
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


def first_token_state(model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The hidden state every head in HEADS reads: the last layer at the first token."""
    return model.base_model(**inputs).last_hidden_state[:, 0]


class TextClassifier:
    """A Hugging Face text encoder with a new sequence-classification head
    (classifier.Classifier). Every row is tokenised once, on first use: a head on cached
    features never needs the tokens."""

    head_learning_rate: float | None = None  # the head reads BERT's pooler: the job's rate

    def __init__(
        self, tokenizer: Any, model: PreTrainedModel, examples: TextExamples, max_length: int
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.max_length = max_length
        self.feature_width = int(model.config.hidden_size)
        self._tokens = tokenize_once(tokenizer, examples, max_length)

    @classmethod
    def load(cls, spec: TrainSpec, device: torch.device) -> TextClassifier:
        assert isinstance(spec.examples, TextExamples)
        tokenizer, model = load_text_model(spec.model_path, spec.label_names)
        model.to(device)  # type: ignore[arg-type]  # transformers wraps .to; mypy loses it
        return cls(tokenizer, model, spec.examples, spec.params.max_length)

    @property
    def head_modules(self) -> tuple[str, ...]:
        return head_of(self.model).modules

    def rows(self, *, augment_idx: frozenset[int]) -> BatchSource:
        return self._tokens()

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).logits

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return first_token_state(self.model, batch)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        return head_of(self.model).forward(self.model, features)

    def feature_identity(self) -> Any:
        return {"max_length": self.max_length}

    def blocks(self, strategy: str) -> list[tuple[str, ...]]:
        path = layout_of(self.model, strategy).blocks
        return [(f"{path}.{i}",) for i in range(len(encoder_blocks(self.model, strategy)))]

    def lora_targets(self, strategy: str) -> tuple[list[str], str | None]:
        return list(layout_of(self.model, strategy).lora_targets), "SEQ_CLS"

    def save(self, model: nn.Module, folder: Path) -> None:
        assert isinstance(model, PreTrainedModel)
        model.save_pretrained(folder)  # safetensors; config carries id2label / label2id
        self.tokenizer.save_pretrained(folder)

    def outputs_snippet(self) -> str:
        return f"""import json
import torch
config = json.load(open("model/config.json"))
labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("model")
model = AutoModelForSequenceClassification.from_pretrained("model").eval()
inputs = tokenizer(
    ["some text"], truncation=True, max_length={self.max_length}, return_tensors="pt"
)
with torch.no_grad():
    outputs = model(**inputs).logits[0]"""

    def loading_snippet(self) -> str:
        return """from transformers import AutoModelForSequenceClassification, pipeline
model = AutoModelForSequenceClassification.from_pretrained("model")
classify = pipeline("text-classification", model="model")
print(classify("some text to classify", top_k=None))"""
