"""Multi-label classification: any number of labels per row (topics, symptoms, tags).

A cell holds several labels, separated by `|`, `;` or `,` (detected, or chosen), or as a
JSON list. The head has one sigmoid output per label, trained with binary cross-entropy;
after training each label gets its own threshold, the one with the best F1 on validation,
stored in the export's config. Headline: macro-F1 (every label counts alike, so rare
labels are not drowned by frequent ones). Split: iterative stratification (Sechidis et al.,
the iterative-stratification package), so every label reaches each split where counts allow.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.training.tasks.base import Headline, LabelProblem, LabelSummary, RowsAreExamples
from worker.training.tasks.classification import _ranked, read_label
from worker.training.tasks.splitting import Split

if TYPE_CHECKING:
    import torch

    from worker.training.hyperparameters import TrainParams

NAME = "multi_label"
HEADLINE = Headline("macro_f1", "macro-F1", higher_is_better=True)
SEPARATORS = ("|", ";", ",")
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)  # tried per label on validation
TOP_PAIRS = 10  # co-occurring pairs shown in the report


def detect_separator(cells: list[str]) -> str | None:
    """The separator most label cells contain (None: no cell holds more than one label,
    or the cells are JSON lists)."""
    cells = [c for c in cells if c and not c.lstrip().startswith("[")]
    counts = {sep: sum(sep in c for c in cells) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])  # ties: the earlier, rarer in text
    return best if counts[best] else None


def read_labels(value: Any, separator: str | None) -> list[str] | None:
    """The labels of one cell, in order, without repeats; None when it holds none. A JSON
    list (`["a", "b"]`) is read as one; anything else is split on `separator`. A list is a
    row's 0/1 columns that hold 1: its labels, possibly none (a row with no label)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = read_label(value)
    if text is None:
        return None
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise LabelProblem(
                f"{text[:40]!r} starts like a JSON list but is not one ({err.msg}); write "
                'it as ["a", "b"] or as a|b'
            ) from None
        if not isinstance(items, list) or not all(isinstance(i, str | int) for i in items):
            raise LabelProblem(f"{text[:40]!r} must be a JSON list of label names")
        parts = [str(i).strip() for i in items]
    else:
        parts = [p.strip() for p in text.split(separator)] if separator else [text]
    labels = list(dict.fromkeys(p for p in parts if p))
    return labels or None


def summarise(rows: list[list[str]], names: list[str] | None = None) -> LabelSummary:
    """Label frequencies, co-occurrence of the most frequent pairs, labels on every row or
    never (`names`: every label there is, when known: a 0/1 column each), rows with none."""
    counts: Counter[str] = Counter(label for row in rows for label in row)
    counts.update({name: 0 for name in names or () if name not in counts})
    pairs: Counter[tuple[str, str]] = Counter()
    for row in rows:
        ordered = sorted(row)
        pairs.update((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])
    summary = LabelSummary(label_names=sorted(counts), counts=dict(sorted(counts.items())))
    if len(counts) < 2:
        summary.errors.append(
            (
                "one_label",
                "every labelled row carries the same single label; multi-label training "
                "needs at least two different labels",
            )
        )
    always = sorted(label for label, n in counts.items() if n == len(rows))
    if always and len(counts) >= 2:
        summary.warnings.append(
            (
                "label_always_present",
                f"{', '.join(repr(a) for a in always[:10])} "
                f"{'is' if len(always) == 1 else 'are'} on every row, so there is nothing "
                "to learn about them; drop them or add rows without them",
            )
        )
    never = sorted(label for label, n in counts.items() if n == 0)
    if never:
        summary.warnings.append(
            (
                "label_never_present",
                f"{', '.join(repr(a) for a in never[:10])} never "
                f"{'holds' if len(never) == 1 else 'hold'} a 1, so the model can only learn "
                "never to predict it; add rows with it or leave the column out",
            )
        )
    empty = sum(1 for row in rows if not row)
    if empty:
        summary.warnings.append(
            (
                "rows_without_labels",
                f"{empty} rows carry no label at all; they train as examples of none",
            )
        )
    rare = sorted(label for label, n in counts.items() if 0 < n < 3)
    if rare:
        summary.warnings.append(
            (
                "rare_labels",
                f"{len(rare)} labels appear on fewer than 3 rows ({', '.join(rare[:10])}); "
                "they cannot reach every split and their scores will be noise",
            )
        )
    summary.extra = {
        "labels_per_row": round(sum(map(len, rows)) / max(len(rows), 1), 3),
        "co_occurrence": [
            {"labels": list(pair), "rows": n} for pair, n in pairs.most_common(TOP_PAIRS)
        ],
    }
    return summary


def split(labels: list[list[int]], width: int, *, seed: int, validation_fraction: float,
          test_fraction: float) -> Split:  # fmt: skip
    """Iterative stratification: test first, then validation from what is left."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    matrix = multi_hot(labels, width)
    rows = np.arange(len(labels))

    def cut(idx: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        if fraction <= 0 or len(idx) < 2:
            return idx, idx[:0]
        splitter = MultilabelStratifiedShuffleSplit(
            n_splits=1, test_size=fraction, random_state=seed
        )
        keep, held = next(splitter.split(idx.reshape(-1, 1), matrix[idx]))
        return idx[keep], idx[held]

    rest, test = cut(rows, test_fraction)
    train, validation = cut(rest, validation_fraction / max(1e-9, 1 - test_fraction))
    return Split(sorted(train.tolist()), sorted(validation.tolist()), sorted(test.tolist()))


def multi_hot(labels: list[list[int]], width: int) -> np.ndarray:
    matrix = np.zeros((len(labels), width), dtype=np.float32)
    for i, row in enumerate(labels):
        matrix[i, row] = 1.0
    return matrix


def _thresholds(labels: list[str], config: dict) -> list[float]:
    """Each label's threshold from an export's config (0.5 where none was stored)."""
    stored = config.get("thresholds") or {}
    return [float(stored.get(name, 0.5)) for name in labels]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def scores_at(probabilities: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> dict:
    from sklearn.metrics import f1_score, hamming_loss

    predicted = (probabilities >= thresholds).astype(np.int64)
    truth = truth.astype(np.int64)
    return {
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float((predicted == truth).all(axis=1).mean()),
        "hamming_loss": float(hamming_loss(truth, predicted)),
    }


def bce(outputs: np.ndarray, truth: np.ndarray) -> float:
    x = outputs.astype(np.float64)
    return float((np.maximum(x, 0) - x * truth + np.log1p(np.exp(-np.abs(x)))).mean())


@dataclass
class MultiLabelJob(RowsAreExamples):
    examples: Any
    label_names: list[str]
    headline: Headline = HEADLINE
    thresholds: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._truth = multi_hot(self.examples.labels, len(self.label_names))
        self.thresholds = np.full(len(self.label_names), 0.5)

    def targets(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(self._truth)

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, *, smoothed: bool = True
    ) -> torch.Tensor:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(outputs, targets)

    def scores(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, float]:
        truth = self._truth[np.asarray(rows)]
        return {"loss": bce(outputs, truth)} | scores_at(sigmoid(outputs), truth, self.thresholds)

    def tune(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        """Each label's threshold: the best validation F1 on a grid (ties: nearest 0.5);
        a label absent from validation keeps 0.5. Returns the F1-by-threshold curves."""
        probabilities, truth = sigmoid(outputs), self._truth[np.asarray(rows)]
        curves = {}
        for j, name in enumerate(self.label_names):
            positives = truth[:, j] > 0
            predicted = probabilities[:, [j]] >= THRESHOLDS[None, :]
            tp = (predicted & positives[:, None]).sum(axis=0)
            f1 = 2 * tp / np.maximum(predicted.sum(axis=0) + positives.sum(), 1)
            curves[name] = [round(float(v), 4) for v in f1]
            if positives.any():
                best = np.flatnonzero(f1 == f1.max())
                self.thresholds[j] = THRESHOLDS[best[np.argmin(abs(THRESHOLDS[best] - 0.5))]]
        return {
            "val_threshold_f1": {"thresholds": THRESHOLDS.tolist(), "f1": curves},
            "thresholds": dict(zip(self.label_names, self.thresholds.tolist(), strict=True)),
        }

    def report(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import precision_recall_fscore_support

        truth = self._truth[np.asarray(rows)].astype(np.int64)
        predicted = (sigmoid(outputs) >= self.thresholds).astype(np.int64)
        precision, recall, f1, support = precision_recall_fscore_support(
            truth, predicted, average=None, zero_division=0
        )
        per_label = {
            name: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "support": int(support[j]),
                "threshold": float(self.thresholds[j]),
            }
            for j, name in enumerate(self.label_names)
        }
        return {
            "scores": self.scores(outputs, rows),
            "views": {"per_label": per_label, "labels": list(self.label_names)},
        }

    def predictions(self, outputs: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
        """Each validation row with its true and predicted labels and their probabilities:
        the per-label table opens the rows a label was missed or wrongly given on."""
        probabilities = sigmoid(outputs)
        shown = []
        for position, row in enumerate(np.asarray(rows).tolist()):
            p = probabilities[position]
            true = set(self.examples.labels[row])
            predicted = set(np.flatnonzero(p >= self.thresholds).tolist())
            shown.append(
                {
                    "index": int(row),
                    **self.examples.describe(row),
                    "true": [self.label_names[j] for j in sorted(true)],
                    "predicted": [self.label_names[j] for j in sorted(predicted)],
                    "scores": {
                        self.label_names[j]: round(float(p[j]), 4) for j in sorted(true | predicted)
                    },
                }
            )
        return shown

    def finish(self, model: Any) -> dict[str, Any]:
        return {
            "problem_type": "multi_label_classification",
            "thresholds": {
                name: float(t) for name, t in zip(self.label_names, self.thresholds, strict=True)
            },
        }


class MultiLabel:
    name = NAME
    title = "Multi-label — several tags per row"
    noun = "multi-label classifier"
    not_offered: dict[str, str] = {}  # every strategy applies

    # The test scores the job page and the CLI show, as (name in results without test_, label).
    scores = (
        ("macro_f1", "macro-F1"),
        ("micro_f1", "micro-F1"),
        ("subset_accuracy", "subset accuracy (every label right)"),
        ("hamming_loss", "Hamming loss (labels wrong)"),
    )

    def reading_snippet(self) -> str:
        """The model card's last lines: an answer from `outputs`, `config` and `labels`."""
        return """probabilities = torch.sigmoid(outputs).tolist()
# each label's threshold was chosen on validation (config["thresholds"])
print([name for name, p in zip(labels, probabilities) if p >= config["thresholds"][name]])"""

    def encode(self, labels: list[Any], label_names: list[str]) -> list[Any]:
        """Each row's label names as a sorted list of ids."""
        ids = {name: i for i, name in enumerate(label_names)}
        return [sorted(ids[name] for name in row) for row in labels]

    def split(self, labels: list[Any], label_names: list[str], **fractions: Any) -> Split:
        return split(labels, len(label_names), **fractions)

    def headline(self, params: TrainParams | dict[str, Any]) -> Headline:
        return HEADLINE

    def curves(self, params: TrainParams | dict[str, Any]) -> list[tuple[str, str]]:
        """The validation curves drawn beside the loss."""
        return [("micro_f1", "micro-F1"), ("macro_f1", "macro-F1")]

    def bind(
        self, examples: Any, label_names: list[str], train_idx: list[int], params: TrainParams
    ) -> MultiLabelJob:
        return MultiLabelJob(examples, label_names)

    def check_labels(self, labels: list[Any], label_names: list[str]) -> None:
        if len(label_names) < 2:
            raise ValueError("multi-label training needs at least two labels")
        for row in labels:
            if not isinstance(row, list | tuple) or any(not 0 <= j < len(label_names) for j in row):
                raise ValueError(f"multi-label row {row!r} is not a list of label ids")

    def answer(self, outputs: list[float], labels: list[str], config: dict) -> dict[str, Any]:
        """The labels at or above their thresholds, and every label's probability."""
        p = sigmoid(np.asarray(outputs, dtype=np.float64))
        thresholds = _thresholds(labels, config)
        return {
            "labels": [name for name, v, t in zip(labels, p, thresholds, strict=True) if v >= t],
            "probabilities": _ranked(labels, p),
            "thresholds": dict(zip(labels, thresholds, strict=True)),
        }

    def csv_header(self, labels: list[str]) -> list[str]:
        return ["predicted", "error", *(f"p({label})" for label in labels)]

    def csv_rows(self, outputs: Any, labels: list[str], config: dict) -> list[list[Any]]:
        answer = self.answer(outputs, labels, config)
        p = sigmoid(np.asarray(outputs, dtype=np.float64))
        return [["|".join(answer["labels"]), "", *(round(float(v), 6) for v in p)]]


TASK = MultiLabel()
