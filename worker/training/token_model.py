"""A Hugging Face text encoder with a new token-classification head (classifier.Classifier),
for entity tagging (tasks/token_classification.py).

Its rows are token windows of the sentences (token_windows.py), built once at load: the
task maps each split's sentences onto them. The head is a linear layer on every token's last
hidden state, so frozen features are per-token states, cached as (windows, width, hidden):
the same cache, fit and LP-FT probe as the other tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForTokenClassification, AutoTokenizer, PreTrainedModel

from worker.training.spec import TokenExamples, TrainSpec
from worker.training.text_model import encoder_blocks, layout_of
from worker.training.token_windows import TokenWindows, tokenize_words

STRIDE = 32  # tokens two windows of one long sentence share


def load_token_model(model_path: str, label_names: list[str]) -> tuple[Any, PreTrainedModel]:
    """Tokenizer and model with a new token-classification head sized for `label_names`;
    safetensors and transformers' own code only (model_files.check_model_folder)."""
    from worker.training.model_files import check_model_folder

    if Path(model_path).is_dir():
        check_model_folder(model_path)
    # Byte-level BPE tokenizers (RoBERTa) need the prefix space to take pre-split words.
    tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True, trust_remote_code=False)
    if getattr(tokenizer, "add_prefix_space", None) is False:
        tokenizer = AutoTokenizer.from_pretrained(
            model_path, use_fast=True, trust_remote_code=False, add_prefix_space=True
        )
    model = AutoModelForTokenClassification.from_pretrained(
        model_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        use_safetensors=True,
        trust_remote_code=False,
        dtype=torch.float32,
    )
    return tokenizer, model


def inside_tags(label_names: list[str]) -> list[int]:
    """For each tag, the tag a word's later sub-tokens train on: I-X for B-X and I-X, O for
    O. Scores read each word's first sub-token alone (the usual rule), but the
    token-classification pipeline that the export card and the playground run with simple
    aggregation reads every sub-token: left untrained, later pieces answer at random, and
    "Hooli" came out as the entity "Ho" (measured, tests/e2e/test_tasks_path.py)."""
    ids = {name: i for i, name in enumerate(label_names)}
    return [ids.get(f"I-{name[2:]}", i) if name != "O" else i for i, name in enumerate(label_names)]


class TokenClassifier:
    head_learning_rate: float | None = None  # a fresh linear head on token states

    def __init__(
        self, tokenizer: Any, model: PreTrainedModel, windows: TokenWindows, max_length: int
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.windows = windows
        self.max_length = max_length
        self.feature_width = int(model.config.hidden_size)
        # Per-token features: every window's states, as wide as the widest window.
        self.feature_shape = (int(windows.lengths.max(initial=1)), self.feature_width)
        self.row_count = len(windows.lengths)

    @classmethod
    def load(cls, spec: TrainSpec, device: torch.device) -> TokenClassifier:
        assert isinstance(spec.examples, TokenExamples)
        tokenizer, model = load_token_model(spec.model_path, spec.label_names)
        model.to(device)  # type: ignore[arg-type]
        windows = tokenize_words(
            tokenizer,
            spec.examples.words,
            spec.examples.labels,
            max_length=spec.params.max_length,
            stride=STRIDE,
            inside=inside_tags(spec.label_names),
        )
        return cls(tokenizer, model, windows, spec.params.max_length)

    @property
    def head_modules(self) -> tuple[str, ...]:
        return ("classifier",)

    def rows(self, *, augment_idx: frozenset[int]) -> TokenWindows:
        return self.windows

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return self.model.base_model(**inputs).last_hidden_state

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        head = self.model
        return head.classifier(head.dropout(features))  # type: ignore[operator]

    def feature_identity(self) -> Any:
        return {"max_length": self.max_length, "stride": STRIDE, "per": "token"}

    def blocks(self, strategy: str) -> list[tuple[str, ...]]:
        path = layout_of(self.model, strategy).blocks
        return [(f"{path}.{i}",) for i in range(len(encoder_blocks(self.model, strategy)))]

    def lora_targets(self, strategy: str) -> tuple[list[str], str | None]:
        return list(layout_of(self.model, strategy).lora_targets), "TOKEN_CLS"

    def save(self, model: nn.Module, folder: Path) -> None:
        assert isinstance(model, PreTrainedModel)
        model.save_pretrained(folder)  # safetensors; config carries the tags as id2label
        self.tokenizer.save_pretrained(folder)

    def outputs_snippet(self) -> str:
        return self.loading_snippet()

    def loading_snippet(self) -> str:
        return """from transformers import AutoModelForTokenClassification, pipeline
model = AutoModelForTokenClassification.from_pretrained("model")
tag = pipeline("token-classification", model="model", aggregation_strategy="simple")
print(tag("Ada Lovelace met Charles Babbage in London."))  # entities with character spans"""
