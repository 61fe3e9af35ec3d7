"""Logits for a set of rows, and the scores Tuneboard shows for them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from worker.training.reporting import Cancelled, Reporter
from worker.training.spec import Examples
from worker.training.text_data import BatchSource, sorted_batches, to_device

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@torch.inference_mode()
def predict_logits(
    forward: Forward,
    source: BatchSource,
    idx: list[int] | np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    reporter: Reporter,
    phase: str | None = None,
) -> np.ndarray:
    """(len(idx), classes) float32 logits in the order of `idx`. Batches run longest first
    for the least padding; `phase`, when given, is reported as progress."""
    idx = np.asarray(idx)
    position = {row: i for i, row in enumerate(idx.tolist())}
    batches = sorted_batches(source.lengths, idx, batch_size)
    logits: np.ndarray | None = None
    for i, rows in enumerate(batches):
        if reporter.should_stop():
            raise Cancelled("cancelled while evaluating")
        inputs = to_device(source.batch(rows), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = forward(inputs).float().cpu().numpy()
        if logits is None:
            logits = np.empty((len(idx), out.shape[1]), dtype=np.float32)
        logits[[position[r] for r in rows.tolist()]] = out
        if phase is not None:
            reporter.progress(step=i + 1, total_steps=len(batches), phase=phase)
    assert logits is not None, "predict_logits needs at least one row"
    return logits


def summary_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """loss, accuracy and macro-F1: what validation reports each epoch."""
    predicted = logits.argmax(axis=1)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels).long()).item()
    return {
        "loss": float(loss),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(
            f1_score(
                labels, predicted, average="macro", labels=range(logits.shape[1]), zero_division=0
            )
        ),
    }


def full_report(logits: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict:
    """Summary scores plus per-class precision/recall/F1/support and the confusion matrix
    (rows are the true labels), all JSON-serialisable."""
    classes = list(range(len(label_names)))
    predicted = logits.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
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
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "labels": list(label_names),
    }


def validation_predictions(
    logits: np.ndarray, idx: list[int], examples: Examples, label_names: list[str]
) -> list[dict]:
    """One row per validation example, for the job page: a cell of the validation confusion
    matrix opens the examples behind it. `index` is the row in the dataset (examples)."""
    probabilities = torch.softmax(torch.from_numpy(logits).float(), dim=1).numpy()
    rows = []
    for position, row in enumerate(idx):
        predicted = int(probabilities[position].argmax())
        rows.append(
            {
                "index": int(row),
                **examples.describe(row),
                "true": label_names[examples.labels[row]],
                "predicted": label_names[predicted],
                "confidence": round(float(probabilities[position, predicted]), 6),
            }
        )
    return rows
