"""The adaptation strategies a job can use, as the web types them. Their names, titles and
help, and every setting with its defaults, are in worker/training/hyperparameters.py."""

from __future__ import annotations

from enum import StrEnum

from worker.training.hyperparameters import STRATEGY_TEXT
from worker.training.tasks import get_task


class Strategy(StrEnum):
    # The members spell hyperparameters.STRATEGIES (+ AUTO): tests/test_settings_source.py
    # holds them equal.
    transfer_frozen = "transfer_frozen"
    transfer_top_k = "transfer_top_k"
    finetune_full = "finetune_full"
    finetune_lora = "finetune_lora"
    lp_ft = "lp_ft"
    auto = "auto"  # resolved to one of the others when the job starts

    @property
    def label(self) -> str:
        return STRATEGY_TEXT[self.value][0]

    @property
    def help(self) -> str:
        return STRATEGY_TEXT[self.value][1]


CONCRETE: list[Strategy] = [s for s in Strategy if s is not Strategy.auto]


def offered(task: str) -> list[Strategy]:
    """The concrete strategies that apply to a dataset's task (generation has no frozen-
    features head, so neither transfer_frozen nor LP-FT)."""
    not_offered = get_task(task).not_offered
    return [s for s in CONCRETE if s.value not in not_offered]


def default_strategy(task: str) -> Strategy:
    """What the form preselects: frozen features, the strong and cheap baseline to run
    first; where a task cannot use them, LoRA, the cheapest run that still adapts."""
    if Strategy.transfer_frozen in offered(task):
        return Strategy.transfer_frozen
    return Strategy.finetune_lora
