"""Spotting overfitting in a job's curves, so the page can say so with the epoch.

Two signs, either is enough:
- validation loss rises for RISING_EPOCHS epochs in a row while training loss keeps falling;
- validation loss exceeds training loss by more than GAP_RATIO times (and by GAP_MIN), i.e.
  the model fits its training rows far better than rows it has not seen.

Neither applies to a frozen head's regularisation path (series with `head_l2`): its points
are L2 strengths from strong to weak, not training time, and weaker L2 lowering training loss
while raising validation loss is exactly what choosing the strength on validation guards
against. Points at epoch 0 (lp_ft's fitted probe) come before training and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

RISING_EPOCHS = 2
GAP_RATIO = 3.0
GAP_MIN = 0.3


@dataclass(frozen=True)
class OverfittingWarning:
    epoch: int  # where it started
    message: str


def train_loss_per_epoch(series: dict[str, dict[str, list[float]]]) -> dict[int, float]:
    """Average the step-level training loss over each epoch (epoch e holds (e-1, e]); points
    at epoch 0 or before are not training."""
    sums: dict[int, list[float]] = {}
    points = series.get("train_loss", {"epoch": [], "value": []})
    for epoch, value in zip(points["epoch"], points["value"], strict=True):
        if epoch > 0:
            sums.setdefault(max(1, ceil(epoch - 1e-9)), []).append(value)
    return {e: sum(v) / len(v) for e, v in sums.items()}


def detect(series: dict[str, dict[str, list[float]]]) -> OverfittingWarning | None:
    if "head_l2" in series:
        return None
    val_points = series.get("val_loss", {"epoch": [], "value": []})
    val = {round(e): v for e, v in zip(val_points["epoch"], val_points["value"], strict=True)}
    train = train_loss_per_epoch(series)
    epochs = sorted(e for e in val if e in train)
    for i, epoch in enumerate(epochs):
        window = epochs[i - RISING_EPOCHS : i + 1] if i >= RISING_EPOCHS else []
        if len(window) == RISING_EPOCHS + 1:
            vals = [val[e] for e in window]
            trains = [train[e] for e in window]
            rising = all(a < b for a, b in zip(vals, vals[1:], strict=False))
            if rising and trains[-1] < trains[0]:
                start = window[0]
                return OverfittingWarning(
                    start,
                    f"Validation loss has risen since epoch {start} while training loss kept "
                    "falling: the model is starting to memorise. The best epoch's weights are "
                    "the ones kept; fewer epochs or early stopping would save time.",
                )
        gap = val[epoch] - train[epoch]
        if gap > GAP_MIN and val[epoch] > GAP_RATIO * train[epoch]:
            return OverfittingWarning(
                epoch,
                f"From epoch {epoch}, validation loss is {val[epoch] / train[epoch]:.1f}× the "
                "training loss: the model fits its training rows much better than new ones. "
                "More data, fewer epochs or a strategy that trains fewer weights may help.",
            )
    return None
