"""Raw outputs from an exported model folder, and the task's reading of them: what the
playground and batch prediction run.

It reads the very folder a user downloads (export/model), through the loaders the model card
shows, so the playground answers exactly as the download will:
  config.json with "architecture"   a packaged CNN: image_modeling.load_model
  preprocessor_config.json          a Hugging Face image model
  a *ForTokenClassification model   an entity tagger: the token-classification pipeline
  modules.json                      a sentence-transformers model whose last module (a
                                    Dense layer) is the classifier: encode() gives logits
  otherwise                         a Hugging Face text classifier with its tokenizer
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from worker.training import image_modeling
from worker.training.tasks import Task, task_of_config

BATCH_SIZE = 32


class Predictor:
    """One loaded model; `labels` in output order. `texts`, `images` and `classify` give
    raw outputs (logits; a regression's number); `task.answer` and `task.csv_cells` read
    them with the export's `config` (multi-label thresholds)."""

    labels: list[str]
    kind: str  # "text" | "image"
    config: dict[str, Any]

    @property
    def task(self) -> Task:
        return task_of_config(self.config)

    def texts(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[list[float]]:
        raise ValueError("this model classifies images, not text")

    def images(self, images: Sequence[Image.Image]) -> list[list[float]]:
        raise ValueError("this model classifies text, not images")


class TextPredictor(Predictor):
    kind = "text"

    def __init__(self, folder: Path) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            folder, use_fast=True, trust_remote_code=False
        )
        self.model = AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False
        ).eval()
        config = self.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.config = json.loads((folder / "config.json").read_text())
        args = _training_args(folder)
        self.max_length = int(args.get("params", {}).get("max_length", 512))

    def texts(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[list[float]]:
        out: list[list[float]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH_SIZE):
                stop = start + BATCH_SIZE
                encoded = self.tokenizer(
                    list(texts[start:stop]),
                    list(pairs[start:stop]) if pairs is not None else None,
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                out += self.model(**encoded).logits.float().tolist()
        return out


class SentencePredictor(Predictor):
    """A sentence-transformers export (sentence_model.py): `encode` returns the logits, and
    it truncates at the job's max_length, saved as the model's max_seq_length."""

    kind = "text"

    def __init__(self, folder: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(
            str(folder),
            device="cpu",
            trust_remote_code=False,
            local_files_only=True,
            model_kwargs={"use_safetensors": True},
        )
        self.config = json.loads((folder / "config.json").read_text())
        id2label = self.config["id2label"]
        self.labels = [id2label[str(i)] for i in range(len(id2label))]

    def texts(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[list[float]]:
        if not texts:
            return []
        inputs: list[Any] = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        with torch.inference_mode():
            logits = self.model.encode(
                inputs, convert_to_tensor=True, batch_size=BATCH_SIZE, show_progress_bar=False
            )
        return list(logits.float().tolist())


class TokenPredictor(Predictor):
    """An entity tagger, run exactly as its model card says: the token-classification
    pipeline with simple aggregation, so the playground finds what the download finds."""

    kind = "text"

    def __init__(self, folder: Path) -> None:
        from transformers import pipeline

        self.pipe = pipeline(
            "token-classification",
            model=str(folder),
            aggregation_strategy="simple",
            device="cpu",
            model_kwargs={"use_safetensors": True},
        )
        self.config = json.loads((folder / "config.json").read_text())
        id2label = self.config["id2label"]
        self.labels = [id2label[str(i)] for i in range(len(id2label))]

    def texts(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[Any]:
        """Per text, the text and its entities: label, words, character span, score."""
        if not texts:
            return []
        found = self.pipe(list(texts), batch_size=BATCH_SIZE)
        return [
            {
                "text": text,
                "entities": [
                    {
                        "entity_group": e["entity_group"],
                        "word": e["word"],
                        "start": int(e["start"]),
                        "end": int(e["end"]),
                        "score": float(e["score"]),
                        "text": text[int(e["start"]) : int(e["end"])],
                    }
                    for e in entities
                ],
            }
            for text, entities in zip(texts, found, strict=True)
        ]


class ImagePredictor(Predictor):
    kind = "image"

    def __init__(
        self,
        model: nn.Module,
        labels: list[str],
        preprocessing: dict[str, Any],
        config: dict[str, Any],
    ):
        # Channels-last: convolutions run markedly faster on CPU (see image_model.on_device).
        self.model = model.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.labels = labels
        self.preprocessing = preprocessing
        self.config = config

    def images(self, images: Sequence[Image.Image]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(images), BATCH_SIZE):
            chunk = images[start : start + BATCH_SIZE]
            out += self.classify([image_modeling.preprocess(i, self.preprocessing) for i in chunk])
        return out

    def classify(self, tensors: Sequence[torch.Tensor]) -> list[list[float]]:
        """Raw outputs for inputs already preprocessed (image_modeling.preprocess), in one
        forward pass: the caller sizes the batch."""
        with torch.inference_mode():
            batch = torch.stack(list(tensors)).contiguous(memory_format=torch.channels_last)
            logits = self.model(batch)
            logits = getattr(logits, "logits", logits)  # transformers wraps its output
            return list(logits.float().tolist())


def _training_args(folder: Path) -> dict[str, Any]:
    path = folder / "training_args.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_predictor(folder: Path) -> Predictor:
    config = json.loads((folder / "config.json").read_text())
    if "architecture" in config:
        model, plain = image_modeling.load_model(folder)
        labels = [plain["id2label"][str(i)] for i in range(int(plain["num_classes"]))]
        return ImagePredictor(model, labels, plain["preprocessing"], config)
    if (folder / "preprocessor_config.json").is_file():
        from transformers import AutoModelForImageClassification

        from worker.training.image_model import hub_preprocessing

        hub = AutoModelForImageClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False
        )
        labels = [hub.config.id2label[i] for i in range(hub.config.num_labels)]
        return ImagePredictor(hub, labels, hub_preprocessing(folder), config)
    if task_of_config(config).name == "token_classification":
        return TokenPredictor(folder)
    if (folder / "modules.json").is_file():
        return SentencePredictor(folder)
    return TextPredictor(folder)
