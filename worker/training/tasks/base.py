"""What a task is: a kind of label and everything that follows from it.

A `Task` (one module each: classification.py, multi_label.py, regression.py) owns what
its labels are and how they are read from an upload cell, how rows are split, the head's
width, the loss, the scores (and the one headline score that early stopping, the best
epoch, comparisons and Auto rank by), the result views, what the export's config says and
how a prediction is shown. Training code asks the task; nothing else branches on it.

Task modules are imported by the web process too (to read labels and name metrics), so
torch is imported inside the functions that train, never at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

    from worker.training.hyperparameters import TrainParams
    from worker.training.tasks.splitting import Split


@dataclass(frozen=True)
class Headline:
    """The score that ranks epochs, runs and strategies."""

    key: str  # in scores: "macro_f1", "mae"
    label: str  # what people call it: "macro-F1", "MAE"
    higher_is_better: bool

    def better(self, a: float, b: float) -> bool:
        """Whether score `a` beats `b`."""
        return a > b if self.higher_is_better else a < b

    @property
    def worst(self) -> float:
        return -np.inf if self.higher_is_better else np.inf


# Scores where lower is better; every other score Tuneboard reports is better higher.
LOWER_IS_BETTER = frozenset({"loss", "perplexity", "mae", "rmse", "hamming_loss"})
# Scores that are shares (0..1, shown as percents); errors are in the target's units.
SHARES = frozenset(
    {
        "accuracy", "macro_f1", "micro_f1", "subset_accuracy", "hamming_loss", "entity_f1",
        "entity_precision", "entity_recall", "token_accuracy", "exact_match", "rouge_l", "chrf",
        "sample_rouge_l",
    }
)  # fmt: skip


def higher_is_better(score: str) -> bool:
    return score.removeprefix("test_").removeprefix("val_") not in LOWER_IS_BETTER


class LabelProblem(ValueError):
    """A label cell this task cannot read; the message says what to write instead."""


@dataclass
class LabelSummary:
    """What the dataset report says about the labels of the usable rows."""

    label_names: list[str]  # the head's outputs, in order
    counts: dict[str, int]  # per class/label; regression: empty
    errors: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # histograms, co-occurrence…


class JobTask(Protocol):
    """A task bound to one job's labels (and, for regression, its training targets)."""

    headline: Headline

    def attach(self, clf: Any, *, main: bool = True) -> None:
        """Meet the loaded classifier (entity tagging reads its token windows); `main`: this
        process writes the job's files (not so on ranks other than 0 of a parallel run)."""
        ...

    def rows(self, idx: list[int] | np.ndarray) -> np.ndarray:
        """The model's rows for these examples: themselves, or a sentence's windows."""
        ...

    def targets(self) -> torch.Tensor:
        """Every row's target as the loss reads it: class ids, multi-hot rows, numbers."""
        ...

    def epoch_end(self, epoch: int) -> dict[str, float]:
        """After an epoch's validation, with the model in eval mode: anything more to do and
        report for it (generation answers its sample prompts); most tasks have nothing."""
        ...

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, *, smoothed: bool = True
    ) -> torch.Tensor:
        """The training loss; `smoothed=False`: without label smoothing (a head fitted to
        convergence has L2 for that)."""
        ...

    def scores(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, float]:
        """loss, the headline and a few more, on the model's raw outputs for `rows`."""
        ...

    def tune(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        """Whatever is chosen on validation after training (multi-label thresholds);
        returned for the job's metrics."""
        ...

    def report(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        """Scores (flat floats, named as the API names them without `test_`) under
        "scores", and the result views under "views"."""
        ...

    def predictions(self, outputs: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
        """One row per validation example for the job page's views."""
        ...

    def finish(self, model: Any) -> dict[str, Any]:
        """Make the trained model answer in the user's terms (regression folds its scale
        into the output layer); returns what the export's config.json must add."""
        ...


class Task(Protocol):
    name: str
    title: str  # "Classification — one class per row"
    noun: str  # what the model is called on the card: "classifier", "regressor"
    scores: tuple[tuple[str, str], ...]  # test scores shown, as (key without test_, label)
    # Strategies that cannot apply to this task, each with the reason the form and API give.
    not_offered: dict[str, str]

    def headline(self, params: TrainParams | dict[str, Any]) -> Headline:
        """What ranks this job's epochs and runs (`params`: its settings, or a job's
        stored params)."""
        ...

    def curves(self, params: TrainParams | dict[str, Any]) -> list[tuple[str, str]]:
        """(score, label) of the validation curves the job page draws beside the loss."""
        ...

    def reading_snippet(self) -> str:
        """The model card's answer from a loaded model's `outputs`, `config` and `labels`
        (classifier.Classifier.outputs_snippet makes them)."""
        ...

    def encode(self, labels: list[Any], label_names: list[str]) -> list[Any]:
        """Labels as read from the files (names, lists of names, numbers, tag names) as the
        head reads them (ids, lists of ids, numbers)."""
        ...

    def split(self, labels: list[Any], label_names: list[str], **fractions: Any) -> Split:
        """Train/validation/test rows from the encoded labels: the same for the same labels
        and `seed` (fractions: seed, validation_fraction, test_fraction)."""
        ...

    def bind(
        self, examples: Any, label_names: list[str], train_idx: list[int], params: TrainParams
    ) -> JobTask:
        """This job's task: `examples` (spec.Examples) hold every row and its label."""
        ...

    def answer(self, outputs: list[float], labels: list[str], config: dict) -> dict[str, Any]:
        """The playground's answer from one example's raw outputs and the export's config."""
        ...

    def csv_header(self, labels: list[str]) -> list[str]:
        """Batch prediction's result columns (an "error" column among them)."""
        ...

    def csv_rows(self, outputs: Any, labels: list[str], config: dict) -> list[list[Any]]:
        """Batch prediction's rows for one input: one, or one per entity found."""
        ...

    def check_labels(self, labels: list[Any], label_names: list[str]) -> None:
        """Raise ValueError when a spec's labels do not fit the task."""
        ...


class RowsAreExamples:
    """For the tasks whose model reads one example per row."""

    def attach(self, clf: Any, *, main: bool = True) -> None:
        return None

    def rows(self, idx: list[int] | np.ndarray) -> np.ndarray:
        return np.asarray(idx)

    def epoch_end(self, epoch: int) -> dict[str, float]:
        return {}


def output_layer(model: Any, width: int) -> Any:
    """The last linear layer producing `width` outputs: the head's output layer in every
    classifier Tuneboard builds (BERT's classifier, a Dense head, a CNN's fc)."""
    from torch import nn

    found = None
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features == width:
            found = module
    if found is None:
        raise ValueError(f"the model has no linear layer with {width} outputs")
    return found
