"""The tasks Tuneboard adapts models for, by name (the dataset's and the API's `task`).

Each lives in a module of its own; base.py says what a task owns.
"""

from __future__ import annotations

from worker.training.tasks import (
    classification,
    generation,
    multi_label,
    regression,
    token_classification,
)
from worker.training.tasks.base import Headline, JobTask, Task

TASKS: dict[str, Task] = {
    module.TASK.name: module.TASK
    for module in (classification, multi_label, regression, token_classification, generation)
}
NAMES = tuple(TASKS)


def task_of_config(config: dict) -> Task:
    """The task an exported model's config.json was trained for (its problem_type)."""
    architectures = config.get("architectures") or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return TASKS["token_classification"]
    if any(a.endswith("ForCausalLM") for a in architectures):
        return TASKS["generation"]
    kinds = {"multi_label_classification": "multi_label", "regression": "regression"}
    return TASKS[kinds.get(config.get("problem_type") or "", "classification")]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(NAMES)}") from None


__all__ = ["NAMES", "TASKS", "Headline", "JobTask", "Task", "get_task", "task_of_config"]
