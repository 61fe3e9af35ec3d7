"""Regression: one number per row (a rating, a price, a grade, a severity).

The target is standardised with the training rows' mean and deviation, so one learning rate
and one L2 path suit any unit; the loss is mean squared error on that scale. At export the
scale is folded into the output layer (weight·σ, bias·σ + μ), so the saved model answers in
the user's units through the standard loading path and nothing else has to be applied.
Scores are in the user's units: MAE, RMSE, R² and Spearman's ρ; the headline is the one the
job chose (`regression_metric`, default MAE, lower is better). Split: stratified on target
quantile bins, so every split covers the whole range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.training.tasks.base import (
    Headline,
    LabelProblem,
    LabelSummary,
    RowsAreExamples,
    output_layer,
)
from worker.training.tasks.splitting import Split, stratified_split

if TYPE_CHECKING:
    import torch

    from worker.training.hyperparameters import TrainParams

NAME = "regression"
HEADLINES = {
    "mae": Headline("mae", "MAE", higher_is_better=False),
    "rmse": Headline("rmse", "RMSE", higher_is_better=False),
    "r2": Headline("r2", "R²", higher_is_better=True),
    "spearman": Headline("spearman", "Spearman ρ", higher_is_better=True),
}
BINS = 10  # target quantile bins the split stratifies on
OUTLIER_IQRS = 5  # beyond this many interquartile ranges from the quartiles: extreme
SCATTER_POINTS = 2000  # test points kept for the predicted-vs-true chart
WORST = 20  # worst test predictions listed with their rows
# The export answers in 32-bit floats (the scale is folded into its output layer), and past
# this the report's and the training's arithmetic overflows too.
LARGEST = float(np.finfo(np.float32).max)


def read_target(value: Any) -> float | None:
    """A number from a cell ("3.5", 3, " 1e3 "); None when empty; LabelProblem otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise LabelProblem(f"{value!r} is not a number")
    if isinstance(value, int | float):
        number = value  # a JSON integer may be too large for a float: compared exactly below
    else:
        text = str(value).strip().replace("\u2212", "-")
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            raise LabelProblem(f"{text[:40]!r} is not a number") from None
    if isinstance(number, float) and math.isnan(number):
        return None
    if isinstance(number, float) and math.isinf(number):
        raise LabelProblem("an infinite target cannot be learned")
    if abs(number) > LARGEST:
        shown = str(value).strip()
        raise LabelProblem(
            f"{shown[:20] + '…' if len(shown) > 20 else shown} is too large a target: models "
            f"answer in 32-bit numbers, up to ±{LARGEST:.3g}; rescale it (other units, a log)"
        )
    return float(number)


def summarise(values: list[float], name: str) -> LabelSummary:
    """Histogram and statistics of the target, a constant target, extreme outliers."""
    summary = LabelSummary(label_names=[name], counts={})
    if not values:
        return summary
    v = np.asarray(values, dtype=np.float64)
    if np.ptp(v) == 0:
        summary.errors.append(
            ("constant_target", f"every row's target is {v[0]:g}; there is nothing to learn")
        )
    q1, q3 = np.percentile(v, [25, 75])
    spread = OUTLIER_IQRS * (q3 - q1)
    outliers = int(((v < q1 - spread) | (v > q3 + spread)).sum()) if spread > 0 else 0
    if outliers:
        summary.warnings.append(
            (
                "extreme_targets",
                f"{outliers} targets lie more than {OUTLIER_IQRS} interquartile ranges "
                f"outside the middle half ({q1:g}..{q3:g}); check them for typos or units, "
                "since squared error lets a few rows dominate training",
            )
        )
    summary.extra = {
        "target": {
            "min": float(v.min()),
            "max": float(v.max()),
            "mean": float(v.mean()),
            "std": float(v.std()),
            "median": float(np.median(v)),
        },
        "histogram": histogram(v),
    }
    return summary


def histogram(values: np.ndarray, bins: int = 20) -> dict[str, list]:
    """numpy's equal bins, fewer where the values lie too close together for `bins` distinct
    edges (0.3 and 0.30000000000000004), where numpy would raise instead."""
    if values.size and values.min() == values.max():  # one value: one bar (numpy would
        value = float(values[0])  # widen it by ±0.5, which a huge value cannot tell apart)
        return {"edges": [value, value], "counts": [int(values.size)]}
    edges: int | np.ndarray = bins
    if values.size:
        edges = np.unique(np.linspace(values.min(), values.max(), bins + 1))
    counts, found = np.histogram(values, bins=edges)
    return {"edges": found.tolist(), "counts": counts.tolist()}


def split(targets: list[float], *, seed: int, validation_fraction: float,
          test_fraction: float) -> Split:  # fmt: skip
    """Stratified on target quantile bins (fewer bins for few rows)."""
    v = np.asarray(targets, dtype=np.float64)
    bins = max(1, min(BINS, len(v) // 10))
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
    codes = np.searchsorted(edges, v, side="right")
    return stratified_split(
        [f"{c:03d}" for c in codes],
        seed=seed,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
    )


def scores_of(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr

    error = predicted - truth
    variance = float(((truth - truth.mean()) ** 2).sum())
    constant = np.ptp(predicted) == 0 or np.ptp(truth) == 0
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "r2": float(1 - (error**2).sum() / variance) if variance > 0 else 0.0,
        "spearman": 0.0 if constant else float(spearmanr(predicted, truth).statistic),
    }


@dataclass
class RegressionJob(RowsAreExamples):
    examples: Any
    label_names: list[str]
    headline: Headline
    mean: float
    std: float

    def __post_init__(self) -> None:
        self._truth = np.asarray(self.examples.labels, dtype=np.float64)

    def targets(self) -> torch.Tensor:
        import torch

        return torch.as_tensor((self._truth - self.mean) / self.std, dtype=torch.float32)

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, *, smoothed: bool = True
    ) -> torch.Tensor:
        import torch.nn.functional as F

        return F.mse_loss(outputs[:, 0], targets)

    def values(self, outputs: np.ndarray) -> np.ndarray:
        """Raw outputs (standardised) in the user's units."""
        return outputs[:, 0].astype(np.float64) * self.std + self.mean

    def scores(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, float]:
        truth = self._truth[np.asarray(rows)]
        standard = (truth - self.mean) / self.std
        loss = float(((outputs[:, 0].astype(np.float64) - standard) ** 2).mean())
        return {"loss": loss} | scores_of(self.values(outputs), truth)

    def tune(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        return {"target_mean": self.mean, "target_std": self.std}

    def report(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        rows = np.asarray(rows)
        truth, predicted = self._truth[rows], self.values(outputs)
        residuals = predicted - truth
        keep = np.random.default_rng(0).permutation(len(rows))[:SCATTER_POINTS]
        worst = np.argsort(-np.abs(residuals), kind="stable")[:WORST]
        return {
            "scores": self.scores(outputs, rows),
            "views": {
                "labels": list(self.label_names),
                "scatter": [[float(truth[i]), float(predicted[i])] for i in sorted(keep)],
                "residual_histogram": histogram(residuals),
                "worst_predictions": [
                    {
                        "index": int(rows[i]),
                        **self.examples.describe(int(rows[i])),
                        "true": float(truth[i]),
                        "predicted": round(float(predicted[i]), 6),
                    }
                    for i in worst
                ],
            },
        }

    def predictions(self, outputs: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
        predicted = self.values(outputs)
        return [
            {
                "index": int(row),
                **self.examples.describe(row),
                "true": float(self._truth[row]),
                "predicted": round(float(predicted[position]), 6),
            }
            for position, row in enumerate(np.asarray(rows).tolist())
        ]

    def finish(self, model: Any) -> dict[str, Any]:
        """Fold the target scale into the output layer: the model then answers in the
        user's units wherever it is loaded."""
        import torch

        layer = output_layer(model, 1)
        with torch.no_grad():
            layer.weight.mul_(self.std)
            if layer.bias is not None:
                layer.bias.mul_(self.std).add_(self.mean)
        return {"problem_type": "regression", "target": self.label_names[0]}


class Regression:
    name = NAME
    title = "Regression — a number per row"
    noun = "regressor"
    not_offered: dict[str, str] = {}  # every strategy applies

    # The test scores the job page and the CLI show, as (name in results without test_, label).
    scores = (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²"), ("spearman", "Spearman ρ"))

    def reading_snippet(self) -> str:
        """The model card's last lines: an answer from `outputs`, `config` and `labels`."""
        return """print(config["target"], float(outputs[0]))  # already in the target's units"""

    def encode(self, labels: list[Any], label_names: list[str]) -> list[Any]:
        return [float(value) for value in labels]

    def split(self, labels: list[Any], label_names: list[str], **fractions: Any) -> Split:
        return split(labels, **fractions)

    def headline(self, params: TrainParams | dict[str, Any]) -> Headline:
        chosen = (
            params.get("regression_metric")
            if isinstance(params, dict)
            else params.regression_metric
        )
        return HEADLINES[chosen or "mae"]

    def curves(self, params: TrainParams | dict[str, Any]) -> list[tuple[str, str]]:
        """The validation curves drawn beside the loss: the headline and its kin."""
        if self.headline(params).higher_is_better:
            return [("r2", "R²"), ("spearman", "Spearman ρ")]
        return [("mae", "MAE"), ("rmse", "RMSE")]

    def bind(
        self, examples: Any, label_names: list[str], train_idx: list[int], params: TrainParams
    ) -> RegressionJob:
        train = np.asarray(examples.labels, dtype=np.float64)[np.asarray(train_idx)]
        std = float(train.std())
        return RegressionJob(
            examples,
            label_names,
            self.headline(params),
            mean=float(train.mean()),
            std=std if std > 0 else 1.0,
        )

    def check_labels(self, labels: list[Any], label_names: list[str]) -> None:
        if len(label_names) != 1:
            raise ValueError("regression predicts one number: give one target name")
        bad = [y for y in labels if not isinstance(y, int | float) or not math.isfinite(y)]
        if bad:
            raise ValueError(f"target {bad[0]!r} is not a finite number")

    def answer(self, outputs: list[float], labels: list[str], config: dict) -> dict[str, Any]:
        """The predicted number, in the target's units (the export folded its scale in)."""
        return {"value": round(float(outputs[0]), 6), "target": labels[0]}

    def csv_header(self, labels: list[str]) -> list[str]:
        return [f"predicted {labels[0]}", "error"]

    def csv_rows(self, outputs: Any, labels: list[str], config: dict) -> list[list[Any]]:
        return [[round(float(outputs[0]), 6), ""]]


TASK = Regression()
