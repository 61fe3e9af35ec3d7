"""Classification: one class per row. Softmax head, cross-entropy, headline macro-F1.

Labels are class ids into the dataset's label names. Views: per-class precision, recall,
F1 and support, the test confusion matrix, and the validation one whose cells open the
examples behind them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.training.tasks.base import Headline, RowsAreExamples
from worker.training.tasks.splitting import Split, stratified_split

if TYPE_CHECKING:
    import torch

    from worker.training.hyperparameters import TrainParams

NAME = "classification"
HEADLINE = Headline("macro_f1", "macro-F1", higher_is_better=True)


def read_label(value: Any) -> str | None:
    """The class name of a cell: 1, 1.0 and "1" are one class; empty and NaN are no label."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    text = str(value).strip()
    return text or None


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _ranked(labels: list[str], values: Any) -> dict[str, float]:
    """Labels by value, highest first."""
    pairs = sorted(zip(labels, values, strict=True), key=lambda p: -p[1])
    return {label: round(float(v), 6) for label, v in pairs}


def summary_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """loss, accuracy and macro-F1: what validation reports each epoch."""
    from sklearn.metrics import accuracy_score, f1_score

    predicted = logits.argmax(axis=1)
    picked = softmax(logits.astype(np.float64))[np.arange(len(labels)), labels]
    loss = float(-np.log(np.maximum(picked, 1e-45)).mean())
    return {
        "loss": loss,
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(
            f1_score(
                labels, predicted, average="macro", labels=range(logits.shape[1]), zero_division=0
            )
        ),
    }


def confusion(logits: np.ndarray, labels: np.ndarray) -> list[list[int]]:
    """Rows are the true labels."""
    from sklearn.metrics import confusion_matrix

    predicted = logits.argmax(axis=1)
    return confusion_matrix(labels, predicted, labels=range(logits.shape[1])).tolist()


def full_report(logits: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict:
    """Summary scores plus per-class precision/recall/F1/support and the confusion matrix
    (rows are the true labels), all JSON-serialisable."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, logits.argmax(axis=1), labels=list(range(len(label_names))), zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }
    return {
        **summary_scores(logits, labels),
        "per_class": per_class,
        "confusion_matrix": confusion(logits, labels),
        "labels": list(label_names),
    }


@dataclass
class ClassificationJob(RowsAreExamples):
    examples: Any
    label_names: list[str]
    label_smoothing: float
    headline: Headline = HEADLINE

    def __post_init__(self) -> None:
        self._labels = np.asarray(self.examples.labels, dtype=np.int64)

    def targets(self) -> torch.Tensor:
        import torch

        return torch.as_tensor(self._labels, dtype=torch.long)

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, *, smoothed: bool = True
    ) -> torch.Tensor:
        import torch.nn.functional as F

        smoothing = self.label_smoothing if smoothed else 0.0
        return F.cross_entropy(outputs, targets, label_smoothing=smoothing)

    def scores(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, float]:
        return summary_scores(outputs, self._labels[np.asarray(rows)])

    def tune(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        return {"val_confusion_matrix": confusion(outputs, self._labels[np.asarray(rows)])}

    def report(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        full = full_report(outputs, self._labels[np.asarray(rows)], self.label_names)
        views = ("per_class", "confusion_matrix", "labels")
        return {
            "scores": {k: v for k, v in full.items() if k not in views},
            "views": {k: full[k] for k in views},
        }

    def predictions(self, outputs: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
        """A cell of the validation confusion matrix opens the examples behind it; `index`
        is the row in the dataset."""
        probabilities = softmax(outputs.astype(np.float64))
        shown = []
        for position, row in enumerate(np.asarray(rows).tolist()):
            predicted = int(probabilities[position].argmax())
            shown.append(
                {
                    "index": int(row),
                    **self.examples.describe(row),
                    "true": self.label_names[self._labels[row]],
                    "predicted": self.label_names[predicted],
                    "confidence": round(float(probabilities[position, predicted]), 6),
                }
            )
        return shown

    def finish(self, model: Any) -> dict[str, Any]:
        return {}


class Classification:
    name = NAME
    title = "Classification — one class per row"
    noun = "classifier"
    not_offered: dict[str, str] = {}  # every strategy applies

    # The test scores the job page and the CLI show, as (name in results without test_, label).
    scores = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("loss", "loss"))

    def reading_snippet(self) -> str:
        """The model card's last lines: an answer from `outputs`, `config` and `labels`."""
        return """probabilities = torch.softmax(outputs, -1).tolist()
print(labels[probabilities.index(max(probabilities))])"""

    def encode(self, labels: list[Any], label_names: list[str]) -> list[Any]:
        """Class names as the head's ids."""
        ids = {name: i for i, name in enumerate(label_names)}
        return [ids[label] for label in labels]

    def split(self, labels: list[Any], label_names: list[str], **fractions: Any) -> Split:
        """Each class split on its own, so rare classes reach validation and test too."""
        return stratified_split(labels, **fractions)

    def headline(self, params: TrainParams | dict[str, Any]) -> Headline:
        return HEADLINE

    def curves(self, params: TrainParams | dict[str, Any]) -> list[tuple[str, str]]:
        """The validation curves drawn beside the loss."""
        return [("accuracy", "accuracy"), ("macro_f1", "macro-F1")]

    def bind(
        self, examples: Any, label_names: list[str], train_idx: list[int], params: TrainParams
    ) -> ClassificationJob:
        return ClassificationJob(examples, label_names, params.label_smoothing)

    def check_labels(self, labels: list[Any], label_names: list[str]) -> None:
        if len(label_names) < 2:
            raise ValueError("a classifier needs at least two labels")
        bad = [y for y in labels if not 0 <= y < len(label_names)]
        if bad:
            raise ValueError(f"label id {bad[0]} is outside 0..{len(label_names) - 1}")

    def answer(self, outputs: list[float], labels: list[str], config: dict) -> dict[str, Any]:
        """The playground's answer: every class's probability, most likely first."""
        probabilities = softmax(np.asarray([outputs], dtype=np.float64))[0]
        return {"probabilities": _ranked(labels, probabilities)}

    def csv_header(self, labels: list[str]) -> list[str]:
        return ["predicted", "confidence", "error", *(f"p({label})" for label in labels)]

    def csv_rows(self, outputs: Any, labels: list[str], config: dict) -> list[list[Any]]:
        p = softmax(np.asarray([outputs], dtype=np.float64))[0]
        best = int(p.argmax())
        return [[labels[best], round(float(p[best]), 6), "", *(round(float(v), 6) for v in p)]]


TASK = Classification()
