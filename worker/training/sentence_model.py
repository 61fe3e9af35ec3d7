"""Text models that declare their own sentence embedding: a sentence-transformers folder.

A sentence-transformers model (modules.json: Transformer → Pooling → maybe Normalize/Dense)
was trained for the vector its pipeline declares, such as the normalised mean of the token
states, not for the [CLS] state that `AutoModelForSequenceClassification`'s head reads
through BERT's pooler. A classifier on the declared embedding is what the model is good at
(a linear probe on the packaged MiniLM's scores 2–6 points higher than one on [CLS]), so
these models keep their pipeline and get one more module: a Dense layer with no activation,
sized for the labels, which is the head. The export is an ordinary sentence-transformers
folder whose `encode` returns the logits.

Only sentence-transformers' own Transformer, Pooling, Normalize and Dense modules are
accepted: anything else (custom code, routers, other encoders) falls back to
text_model.TextClassifier, and no module's code is ever loaded from the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
from torch import nn

from worker.training.feature_cache import model_identity
from worker.training.spec import TextExamples, TrainSpec
from worker.training.text_data import BatchSource, tokenize_once
from worker.training.text_model import layout_of

KNOWN_MODULES = ("Transformer", "Pooling", "Normalize", "Dense")
EMBEDDING = "sentence_embedding"  # the features key sentence-transformers modules pass along


def module_kind(entry: dict[str, Any]) -> str | None:
    """'Transformer', 'Pooling', 'Normalize' or 'Dense' for a modules.json entry of
    sentence-transformers' own classes (any release's dotted path), else None."""
    kind = entry.get("type")
    if not isinstance(kind, str) or not kind.startswith("sentence_transformers."):
        return None
    name = kind.rsplit(".", 1)[-1]
    return name if name in KNOWN_MODULES else None


def declared_pipeline(model_path: str | Path) -> list[dict[str, Any]] | None:
    """The modules.json entries when the folder declares a pooled embedding built from known
    modules only, else None (the caller then reads [CLS] through TextClassifier)."""
    folder = Path(model_path)
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        return None
    kinds = [module_kind(m) for m in modules]
    if not kinds or None in kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        return None
    if kinds.count("Transformer") != 1:
        return None
    for entry, kind in zip(modules, kinds, strict=True):
        if kind == "Dense" and not _plain_dense(folder / str(entry.get("path", ""))):
            return None
    return modules


def _plain_dense(folder: Path) -> bool:
    # Without trust_remote_code sentence-transformers swaps an activation that is not
    # torch's own for Tanh, with only a warning: that would be another model.
    try:
        activation = json.loads((folder / "config.json").read_text()).get("activation_function")
    except (OSError, ValueError, AttributeError):
        return False
    return activation is None or (isinstance(activation, str) and activation.startswith("torch."))


def check_pipeline_weights(model_path: str | Path, pipeline: list[dict[str, Any]]) -> None:
    """Every module with weights must hold safetensors: sentence-transformers would otherwise
    fall back to a pickled pytorch_model.bin. The Transformer's folder is checked like any
    Hugging Face folder (no pickles, no code of its own)."""
    from worker.training.model_files import check_model_folder

    for entry in pipeline:
        folder = Path(model_path) / str(entry.get("path", ""))
        kind = module_kind(entry)
        if kind == "Transformer":
            check_model_folder(folder)
        elif kind == "Dense" and not (folder / "model.safetensors").is_file():
            raise ValueError(
                f"the Dense module {entry.get('path')} of {Path(model_path).name} has no "
                "safetensors weights (model.safetensors); pickled checkpoints are never loaded"
            )


class PooledClassifierModel(nn.Module):
    """The declared pipeline (`encoder`) and a linear head on its embedding (`head`). Named
    attributes, not nn.Sequential indices: PEFT's modules_to_save matches name endings, so
    a head named "1" would also match every "….layer.1" in the encoder."""

    def __init__(self, encoder: SentenceTransformer, head: Dense) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # sentence-transformers modules add their outputs to the dict they get: pass a copy.
        features = self.encoder(dict(batch))
        logits: torch.Tensor = self.head({EMBEDDING: features[EMBEDDING]})[EMBEDDING]
        return logits


def transformer_of(encoder: SentenceTransformer) -> Transformer:
    first = encoder[0]
    assert isinstance(first, Transformer), type(first)
    return first


class SentenceClassifier:
    """A sentence-transformers model with a Dense head on its declared embedding
    (classifier.Classifier). Rows are tokenised once by the model's own tokenizer, as
    `encode` would tokenise them (pairs longest-first truncated)."""

    head_modules: tuple[str, ...] = ("head",)
    # The head reads an embedding of norm about 1 (1 exactly after Normalize), so at a
    # fine-tuning rate (5e-5) its weights, and the logits, barely grow: AdamW moves each
    # weight by at most the rate per step. Measured on BBC News (MiniLM, 3 epochs of full
    # fine-tuning): validation loss stayed at 1.07 with 98.7 % accuracy, every answer about
    # 35 % sure. A fresh head therefore takes steps at the rate a head on frozen features
    # used to (loop.fit's head_learning_rate); lp_ft's fitted head does not need it.
    head_learning_rate: float | None = 1e-3

    def __init__(
        self,
        model: PooledClassifierModel,
        pipeline: list[dict[str, Any]],
        spec: TrainSpec,
    ) -> None:
        assert isinstance(spec.examples, TextExamples)
        self.model = model
        self.pipeline = pipeline
        self.model_path = Path(spec.model_path)
        self.label_names = list(spec.label_names)
        self.max_length = spec.params.max_length
        self.feature_width = int(model.head.in_features)
        self.tokenizer = model.encoder.tokenizer
        self._tokens = tokenize_once(self.tokenizer, spec.examples, self.max_length)

    @classmethod
    def load(cls, spec: TrainSpec, device: torch.device) -> SentenceClassifier:
        assert isinstance(spec.examples, TextExamples)
        pipeline = declared_pipeline(spec.model_path)
        if pipeline is None:
            raise ValueError(f"{spec.model_path} declares no sentence-transformers pooling")
        check_pipeline_weights(spec.model_path, pipeline)
        encoder = SentenceTransformer(
            str(spec.model_path),
            device="cpu",
            trust_remote_code=False,  # sentence-transformers also strips it from configs
            model_kwargs={"use_safetensors": True, "dtype": torch.float32},
        )
        width = encoder.get_embedding_dimension()
        if width is None:
            raise ValueError(f"the embedding size of {spec.model_path} is unknown")
        # No activation: the head is a linear classifier, its outputs the logits.
        head = Dense(width, len(spec.label_names), bias=True, activation_function=nn.Identity())
        model = PooledClassifierModel(encoder, head)
        model.to(device=device, dtype=torch.float32)  # master weights in fp32
        return cls(model, pipeline, spec)

    def rows(self, *, augment_idx: frozenset[int]) -> BatchSource:
        return self._tokens()

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits: torch.Tensor = model(batch)  # PooledClassifierModel or a PEFT wrapper of it
        return logits

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedding: torch.Tensor = self.model.encoder(dict(batch))[EMBEDDING]
        return embedding

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model.head({EMBEDDING: features})[EMBEDDING]
        return logits

    def feature_identity(self) -> Any:
        # The pipeline is part of the key: these features are not TextClassifier's [CLS]
        # states of the same model and data. The cache key reads the folder's top-level
        # files only; the modules' subfolders (pooling config, Dense weights) count too.
        pooling = next(m for m in self.model.encoder if isinstance(m, Pooling))
        subfolders = sorted({str(m.get("path", "")) for m in self.pipeline} - {""})
        return {
            "max_length": self.max_length,
            "sentence_pipeline": {
                "modules": [m.get("type") for m in self.pipeline],
                "pooling": pooling.get_config_dict(),
                "files": {p: model_identity(str(self.model_path / p)) for p in subfolders},
            },
        }

    def _blocks_path(self, strategy: str) -> str:
        """text_model.LAYOUTS names the blocks from a task model ("bert.encoder.layer");
        sentence-transformers holds the base model itself, so the prefix goes."""
        transformer = transformer_of(self.model.encoder)
        base = transformer.auto_model
        path = layout_of(base, strategy).blocks
        prefix = f"{base.base_model_prefix}."
        if not path.startswith(prefix):
            raise ValueError(f"{strategy} cannot find the encoder blocks of this model")
        # The attribute the Transformer module keeps its model in ("model" in 6.x,
        # "auto_model" before): found, not assumed.
        attribute = next(n for n, m in transformer.named_children() if m is base)
        return f"encoder.0.{attribute}.{path.removeprefix(prefix)}"

    def blocks(self, strategy: str) -> list[tuple[str, ...]]:
        path = self._blocks_path(strategy)
        stack = self.model.get_submodule(path)
        assert isinstance(stack, nn.ModuleList), type(stack)
        return [(f"{path}.{i}",) for i in range(len(stack))]

    def lora_targets(self, strategy: str) -> tuple[list[str], str | None]:
        base = transformer_of(self.model.encoder).auto_model
        return list(layout_of(base, strategy).lora_targets), None

    def save(self, model: nn.Module, folder: Path) -> None:
        assert isinstance(model, PooledClassifierModel), type(model)
        transformer = transformer_of(model.encoder)
        # model/config.json names the labels, as a transformers classifier's does.
        config = transformer.auto_model.config
        config.id2label = dict(enumerate(self.label_names))
        config.label2id = {name: i for i, name in enumerate(self.label_names)}
        device = str(next(model.parameters()).device)  # build where it is: nothing moves
        full = SentenceTransformer(modules=[*model.encoder, model.head], device=device)
        full.max_seq_length = self.max_length  # encode() truncates as training did
        full.save(str(folder))
        # sentence-transformers writes its own card; the export's card is one level up.
        (folder / "README.md").unlink(missing_ok=True)

    def outputs_snippet(self) -> str:
        return """import json
import torch
config = json.load(open("model/config.json"))
labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("model")  # its last module, a Dense layer, is the head
outputs = model.encode(["some text"], convert_to_tensor=True)[0]"""

    def loading_snippet(self) -> str:
        return """import json
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("model")  # its last module, a Dense layer, is the classifier
labels = json.load(open("model/config.json"))["id2label"]
# a pair of texts: model.encode([("first text", "second text")], ...)
logits = model.encode(["some text to classify"], convert_to_tensor=True)
probs = logits.softmax(-1)[0].tolist()
print(labels[str(probs.index(max(probs)))], {labels[str(i)]: p for i, p in enumerate(probs)})"""
