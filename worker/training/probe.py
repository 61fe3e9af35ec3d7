"""A quick probe: how far frozen features alone get on this data.

The "auto" rule asks it when the data size leaves the choice open: a high score says a head
on frozen features is enough, a low one that the backbone has to adapt. It fits exactly
transfer_frozen's head on exactly its feature cache, so a transfer_frozen or lp_ft job that
follows finds the features on disk and pays nothing for them again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from worker.training.classifier import load_classifier
from worker.training.head_fit import fit_stage
from worker.training.reporting import Reporter
from worker.training.run import resolve_device, seed_everything
from worker.training.spec import TRANSFER_FROZEN, TrainSpec
from worker.training.strategies import head_on_features


@dataclass
class _WithoutMetrics:
    """Passes everything on but metric rows, and reports training steps as phase "probe":
    the probe is not the job's training, and its curves would be mistaken for the job's."""

    reporter: Reporter

    def log(self, message: str) -> None:
        self.reporter.log(message)

    def progress(self, *, step: int, total_steps: int, phase: str) -> None:
        phase = "probe" if phase == "training" else phase
        self.reporter.progress(step=step, total_steps=total_steps, phase=phase)

    def metrics(self, *, step: int, epoch: float, values: dict[str, float]) -> None:
        return  # the probe's curves would be drawn as the job's own; they are not recorded

    def should_stop(self) -> bool:
        return self.reporter.should_stop()

    def rewind(self, *, step: int) -> None:
        return  # the probe never resumes


def probe_score(spec: TrainSpec, reporter: Reporter) -> float:
    """The task's validation headline score (macro-F1 for the classifications) of the
    model's head fitted on frozen features (head_fit.py), at
    the L2 strength chosen on validation. Nothing is exported and nothing is written
    outside the feature cache."""
    spec = replace(spec, strategy=TRANSFER_FROZEN)  # the caller's may still be "auto"
    spec.check()
    reporter = _WithoutMetrics(reporter)
    device = resolve_device(spec.device)
    seed_everything(spec.params.seed)
    clf = load_classifier(spec, device)
    stage = head_on_features(spec, clf, device, reporter)
    task = spec.job_task()
    task.attach(clf)
    fitted = fit_stage(stage, spec, task, device, reporter, phase="probe", report_path=False)
    key = task.headline.key
    score = fitted.outcome.best_validation[key]
    reporter.log(f"probe: frozen-features head reaches val_{key} {score:.4f}")
    return score
