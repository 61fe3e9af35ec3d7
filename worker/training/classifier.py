"""What every strategy needs from a pretrained model, whatever it reads: text or images.

A `Classifier` is a pretrained backbone with a new head sized for the job's labels, plus the
few facts the strategies in strategies.py depend on: how rows become model inputs, which
modules form the head and what vector it reads (frozen features), where the stack of blocks
is (top-k), which layers LoRA adapts, and how the result is saved. Four kinds implement it:
  sentence_model.SentenceClassifier text models that declare a sentence-transformers pooling
                                    (modules.json): a head on that pooled embedding
  text_model.TextClassifier         other Hugging Face text encoders (BERT family): a
                                    sequence-classification head on [CLS]
  image_model.PlainImageClassifier  packaged plain-PyTorch ImageNet CNNs (image_modeling.py)
  image_model.HubImageClassifier    Hugging Face image models (ViT, ResNet, ConvNeXt)
  token_model.TokenClassifier       entity tagging: a tag for every token, over windows
  causal_lm.CausalLM                generation: a language model's own output layer, learning
                                    the answers of conversations
`load_classifier` picks one from the spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from worker.training.spec import ChatExamples, ImageExamples, TokenExamples, TrainSpec
from worker.training.text_data import BatchSource

Batch = dict[str, torch.Tensor]


class Classifier(Protocol):
    @property
    def model(self) -> nn.Module:
        """The backbone with its new head, in fp32 on the job's device."""
        ...

    @property
    def head_modules(self) -> tuple[str, ...]:
        """Attribute paths of what trains on frozen features."""
        ...

    @property
    def head_learning_rate(self) -> float | None:
        """The peak rate a fresh head trains at while the backbone fine-tunes (None: the
        job's rate, like every other parameter)."""
        ...

    @property
    def feature_width(self) -> int:
        """Size of the vector the head reads."""
        ...

    def rows(self, *, augment_idx: frozenset[int]) -> BatchSource:
        """Every example as model inputs; rows in `augment_idx` get a fresh random
        augmentation each time they are batched (images only; text ignores it)."""
        ...

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The whole forward; `model` is `self.model` or a PEFT wrapper of it."""
        ...

    def features(self, batch: Batch) -> torch.Tensor:
        """What the head reads, from the frozen backbone: (batch, feature_width)."""
        ...

    def head_logits(self, features: torch.Tensor) -> torch.Tensor: ...

    def feature_identity(self) -> Any:
        """Everything besides the model and the data that cached features depend on
        (max length, image preprocessing), JSON-serialisable."""
        ...

    def blocks(self, strategy: str) -> list[tuple[str, ...]]:
        """The block stack top-k slices, bottom to top: each block as the attribute paths of
        its modules (a CNN's final 1×1 convolution and norm count as its top block)."""
        ...

    def lora_targets(self, strategy: str) -> tuple[list[str], str | None]:
        """Module names LoRA adapts by default, and PEFT's task type (None: a plain module)."""
        ...

    def save(self, model: nn.Module, folder: Path) -> None:
        """Write the trained model as a folder that loads without Tuneboard."""
        ...

    def loading_snippet(self) -> str:
        """Python that loads the saved folder (named `model`), for the model card."""
        ...

    def outputs_snippet(self) -> str:
        """Python that loads the saved folder and leaves, for one example, its raw outputs
        (`outputs`, a 1-D tensor), the saved `config` (a dict) and the `labels` in order:
        what a task's reading_snippet continues from."""
        ...


def load_classifier(spec: TrainSpec, device: torch.device) -> Classifier:
    if isinstance(spec.examples, ChatExamples):
        from worker.training.causal_lm import CausalLM

        return CausalLM.load(spec, device)
    if isinstance(spec.examples, TokenExamples):
        from worker.training.token_model import TokenClassifier

        return TokenClassifier.load(spec, device)
    if isinstance(spec.examples, ImageExamples):
        from worker.training.image_model import load_image_classifier

        return load_image_classifier(spec, device)
    from worker.training.sentence_model import SentenceClassifier, declared_pipeline
    from worker.training.text_model import TextClassifier

    # A model trained for its declared embedding is classified on that embedding.
    if declared_pipeline(spec.model_path) is not None:
        return SentenceClassifier.load(spec, device)
    return TextClassifier.load(spec, device)


def freeze_all_but(model: nn.Module, module_paths: tuple[str, ...]) -> None:
    model.requires_grad_(False)
    for path in module_paths:
        model.get_submodule(path).requires_grad_(True)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def resolve_top_k(top_k: int | None, num_blocks: int) -> int:
    """The blocks transfer_top_k trains: as asked, or a third of them (at least one)."""
    if top_k is None:
        return max(1, round(num_blocks / 3))
    if top_k > num_blocks:
        raise ValueError(
            f"top_k is {top_k} but the model has only {num_blocks} blocks; "
            f"pick 1..{num_blocks} (or finetune_full to train everything)"
        )
    return top_k
