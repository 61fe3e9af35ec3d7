"""Entity tagging (token classification): a tag on every word (names, products, addresses).

Uploads are CoNLL or JSONL files read by tagged_text.py into IOB2 tags; a sentence's labels
are its words' tag ids. The model sees sub-tokens in overlapping windows (token_windows.py):
its rows are windows, so the split (by sentence) is mapped onto windows, and predictions come
back to words from the window where each word has the most context. Scores are entity-level
(exact spans, as seqeval computes them) plus token accuracy; the headline is entity
micro-F1. The export loads with AutoModelForTokenClassification and
pipeline("token-classification", aggregation_strategy="simple"), which the playground runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.training.tasks.base import Headline
from worker.training.tasks.splitting import Split, stratified_split
from worker.training.tasks.tagged_text import entities

if TYPE_CHECKING:
    import torch

    from worker.training.hyperparameters import TrainParams

NAME = "token_classification"
HEADLINE = Headline("entity_f1", "entity F1", higher_is_better=True)
SHOWN_SENTENCES = 200  # validation sentences kept for the page's highlighted view
IGNORE = -100


def types_of(label_names: list[str]) -> list[str]:
    """Entity types of IOB2 tag names, sorted: ["B-LOC", "I-LOC", "O"] → ["LOC"]."""
    return sorted({name[2:] for name in label_names if name != "O"})


def split(tags: list[list[str]], *, seed: int, validation_fraction: float,
          test_fraction: float) -> Split:  # fmt: skip
    """Sentences stratified on the entity types they hold, so every type reaches each split
    where counts allow."""
    keys = ["+".join(sorted({t[2:] for t in row if t != "O"})) or "O" for row in tags]
    return stratified_split(
        keys, seed=seed, validation_fraction=validation_fraction, test_fraction=test_fraction
    )


def _seqeval(truth: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {
        "entity_f1": float(f1_score(truth, predicted, zero_division=0)),
        "entity_precision": float(precision_score(truth, predicted, zero_division=0)),
        "entity_recall": float(recall_score(truth, predicted, zero_division=0)),
    }


@dataclass
class TokenJob:
    examples: Any  # spec.TokenExamples: words and tag ids per sentence
    label_names: list[str]  # IOB2 tags, "O" among them
    label_smoothing: float
    headline: Headline = HEADLINE
    windows: Any = field(default=None, init=False)  # token_windows.TokenWindows, by attach

    def attach(self, clf: Any, *, main: bool = True) -> None:
        """Rows are the classifier's windows of sentences (token_model.py)."""
        self.windows = clf.windows

    def epoch_end(self, epoch: int) -> dict[str, float]:
        return {}

    def rows(self, idx: list[int] | np.ndarray) -> np.ndarray:
        return self.windows.windows_of(np.asarray(idx))

    def targets(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.windows.labels))

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, *, smoothed: bool = True
    ) -> torch.Tensor:
        import torch.nn.functional as F

        width, classes = outputs.shape[1], outputs.shape[-1]
        return F.cross_entropy(
            outputs.reshape(-1, classes),
            targets[:, :width].reshape(-1),
            ignore_index=IGNORE,
            label_smoothing=self.label_smoothing if smoothed else 0.0,
        )

    def _words(self, outputs: np.ndarray, rows: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
        """The sentences behind window `rows`, and each one's per-word outputs."""
        from worker.training.token_windows import words_from_windows

        order = self.windows.sentence[np.asarray(rows)]
        sentences = list(dict.fromkeys(order.tolist()))
        words = [len(self.examples.words[s]) for s in sentences]
        return sentences, words_from_windows(self.windows, outputs, sentences, words)

    def _tags(self, outputs: np.ndarray, rows: np.ndarray):  # noqa: ANN202
        sentences, per_word = self._words(outputs, rows)
        truth = [[self.label_names[t] for t in self.examples.labels[s]] for s in sentences]
        predicted = [[self.label_names[int(i)] for i in w.argmax(axis=1)] for w in per_word]
        return sentences, truth, predicted, per_word

    def scores(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, float]:
        _, truth, predicted, per_word = self._tags(outputs, rows)
        flat_truth = [t for row in truth for t in row]
        flat_pred = [t for row in predicted for t in row]
        ids = {name: i for i, name in enumerate(self.label_names)}
        logits = np.concatenate(per_word).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        picked = log_p[np.arange(len(flat_truth)), [ids[t] for t in flat_truth]]
        accuracy = float(np.mean([a == b for a, b in zip(flat_truth, flat_pred, strict=True)]))
        return (
            {"loss": float(-picked.mean())}
            | _seqeval(truth, predicted)
            | {"token_accuracy": accuracy}
        )

    def tune(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        return {}

    def report(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        from seqeval.metrics import classification_report

        _, truth, predicted, _ = self._tags(outputs, rows)
        table = classification_report(truth, predicted, output_dict=True, zero_division=0)
        types = types_of(self.label_names)
        per_type = {
            t: {
                "precision": float(table[t]["precision"]),
                "recall": float(table[t]["recall"]),
                "f1": float(table[t]["f1-score"]),
                "support": int(table[t]["support"]),
            }
            for t in types
            if t in table
        }
        return {
            "scores": self.scores(outputs, rows),
            "views": {
                "per_type": per_type,
                "labels": types,
                "type_confusion": _type_confusion(truth, predicted, types),
            },
        }

    def predictions(self, outputs: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
        """Validation sentences with true and predicted entities (type, first word, end)."""
        sentences, truth, predicted, _ = self._tags(outputs, rows)
        shown = []
        for s, t, p in list(zip(sentences, truth, predicted, strict=True))[:SHOWN_SENTENCES]:
            shown.append(
                {
                    "index": int(s),
                    "tokens": self.examples.words[s],
                    "true": [list(e) for e in entities(t)],
                    "predicted": [list(e) for e in entities(p)],
                }
            )
        return shown

    def finish(self, model: Any) -> dict[str, Any]:
        return {}


def _type_confusion(truth: list[list[str]], predicted: list[list[str]], types: list[str]) -> dict:
    """Words by true type (rows, "O" last) and predicted type: which types are mistaken for
    which, or missed."""
    names = [*types, "O"]
    index = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    for t_row, p_row in zip(truth, predicted, strict=True):
        for t, p in zip(t_row, p_row, strict=True):
            matrix[index[t[2:] if t != "O" else "O"], index[p[2:] if p != "O" else "O"]] += 1
    return {"labels": names, "matrix": matrix.tolist()}


class TokenClassification:
    name = NAME
    title = "Entity tagging — a tag on each word"
    noun = "entity tagger"
    not_offered: dict[str, str] = {}  # every strategy applies
    scores = (
        ("entity_f1", "entity F1"),
        ("entity_precision", "entity precision"),
        ("entity_recall", "entity recall"),
        ("token_accuracy", "token accuracy"),
    )

    def reading_snippet(self) -> str:
        return ""  # the card's snippet is the token-classification pipeline, whole

    def encode(self, labels: list[Any], label_names: list[str]) -> list[Any]:
        """Each sentence's tags as ids, one per word."""
        ids = {name: i for i, name in enumerate(label_names)}
        return [[ids[tag] for tag in row] for row in labels]

    def split(self, labels: list[Any], label_names: list[str], **fractions: Any) -> Split:
        return split([[label_names[t] for t in row] for row in labels], **fractions)

    def headline(self, params: TrainParams | dict[str, Any]) -> Headline:
        return HEADLINE

    def curves(self, params: TrainParams | dict[str, Any]) -> list[tuple[str, str]]:
        return [("token_accuracy", "token accuracy"), ("entity_f1", "entity F1")]

    def bind(
        self, examples: Any, label_names: list[str], train_idx: list[int], params: TrainParams
    ) -> TokenJob:
        return TokenJob(examples, label_names, params.label_smoothing)

    def answer(self, outputs: Any, labels: list[str], config: dict) -> dict[str, Any]:
        """The playground's answer: the text, and the pipeline's entities with their
        character spans in it (predictor.TokenPredictor)."""
        return {"text": outputs["text"], "entities": outputs["entities"]}

    def csv_header(self, labels: list[str]) -> list[str]:
        return ["entity", "label", "start", "end", "score", "error"]

    def csv_rows(self, outputs: Any, labels: list[str], config: dict) -> list[list[Any]]:
        """One row per entity found (a text with none gets one empty row)."""
        rows = [
            [e["text"], e["entity_group"], e["start"], e["end"], round(e["score"], 6), ""]
            for e in outputs["entities"]
        ]
        return rows or [["", "", "", "", "", ""]]

    def check_labels(self, labels: list[Any], label_names: list[str]) -> None:
        if "O" not in label_names or len(label_names) < 2:
            raise ValueError("entity tagging needs the tag O and at least one entity tag")
        counts = Counter(len(row) for row in labels)
        if counts.get(0):
            raise ValueError("a sentence without words cannot be tagged")


TASK = TokenClassification()
