"""The one link between a training run and the world: progress, metrics, logs and cancel.

The worker's reporter writes metric rows and beats the heartbeat; `MemoryReporter` keeps
everything in lists, for tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class Reporter(Protocol):
    def log(self, message: str) -> None: ...

    # phase: "features", "probe" (lp_ft's first stage, the auto rule's probe), "training",
    # "evaluating" or "exporting"
    def progress(self, *, step: int, total_steps: int, phase: str) -> None: ...

    # values: train_loss, or val_loss / val_accuracy / val_macro_f1
    def metrics(self, *, step: int, epoch: float, values: dict[str, float]) -> None: ...

    # Asked before every training step and every feature or evaluation batch.
    def should_stop(self) -> bool: ...

    # A run resumed from a checkpoint at `step`: metrics reported after it by the run that
    # was lost are dropped, as the resumed run reports those steps again.
    def rewind(self, *, step: int) -> None: ...


class Cancelled(Exception):
    """The reporter asked the run to stop; nothing was published."""


@dataclass
class MemoryReporter:
    """Keeps what a run reports; `cancel_after_steps` asks for a stop after that many
    training steps, which is how tests exercise cancel."""

    cancel_after_steps: int | None = None
    logs: list[str] = field(default_factory=list)
    progress_events: list[tuple[str, int, int]] = field(default_factory=list)
    metric_events: list[tuple[int, float, dict[str, float]]] = field(default_factory=list)
    training_steps: int = 0

    def log(self, message: str) -> None:
        self.logs.append(message)

    def progress(self, *, step: int, total_steps: int, phase: str) -> None:
        self.progress_events.append((phase, step, total_steps))
        if phase == "training":
            self.training_steps += 1

    def metrics(self, *, step: int, epoch: float, values: dict[str, float]) -> None:
        self.metric_events.append((step, epoch, dict(values)))

    def should_stop(self) -> bool:
        return (
            self.cancel_after_steps is not None and self.training_steps >= self.cancel_after_steps
        )

    def rewind(self, *, step: int) -> None:
        self.metric_events = [e for e in self.metric_events if e[0] <= step]

    def series(self, name: str) -> list[tuple[int, float]]:
        """(step, value) for one metric name, in the order reported."""
        return [(step, values[name]) for step, _, values in self.metric_events if name in values]
