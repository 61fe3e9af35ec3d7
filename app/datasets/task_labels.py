"""What a table's label column holds, read the way the dataset's task reads it.

The task modules (worker/training/tasks/) own how one cell is read and what the report says
about all of them; this picks the reader for a column choice, and detects the task of a new
upload from its label cells when the upload did not name one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from app.datasets.columns import ColumnChoice
from app.datasets.parsing import ParseError, Table
from worker.training.tasks import NAMES, multi_label, regression
from worker.training.tasks.base import LabelProblem, LabelSummary
from worker.training.tasks.classification import read_label

LabelReader = Callable[[Any], Any]  # a cell → the task's label, None, or LabelProblem raised
SAMPLE_ROWS = 2000  # label cells looked at to detect a task
MULTI_SHARE = 0.1  # of label cells holding a separator (or a JSON list): multi-label
REGRESSION_DISTINCT = 0.5  # numbers this varied (share of distinct values): regression
MANY_NUMBERS = 50  # whole numbers with this many values are a scale, not class ids
TASK_NAMES = {
    "classification": "one class per row",
    "multi_label": "several labels per row",
    "regression": "a number per row",
    "generation": "a response per prompt",  # chat_datasets.py; no label cells to read
}


def label_reader(choice: ColumnChoice) -> LabelReader:
    if choice.task == "multi_label":
        return partial(multi_label.read_labels, separator=choice.separator)
    if choice.task == "regression":
        return regression.read_target
    return read_label


def summarise_labels(choice: ColumnChoice, values: list[Any]) -> LabelSummary:
    """The task's report on the usable rows' labels (classification's is validation.py's)."""
    if choice.task == "multi_label":
        names = list(choice.indicators) if choice.indicators else None
        return multi_label.summarise(values, names)
    if choice.task == "regression":
        return regression.summarise(values, choice.label)
    return LabelSummary(label_names=sorted(set(values)), counts={})


def check_task(task: str | None, separator: str | None) -> None:
    """A task and separator a request named (422s name the field)."""
    if task is not None and task not in NAMES:
        raise ParseError(f"unknown task '{task}'; choose one of {', '.join(NAMES)}", column="task")
    if separator is not None and separator not in multi_label.SEPARATORS:
        raise ParseError(
            f"label_separator must be one of {' '.join(multi_label.SEPARATORS)} "
            "(or leave it out: detected, or JSON lists)",
            column="label_separator",
        )


def with_task(
    table: Table, choice: ColumnChoice, task: str | None, separator: str | None
) -> ColumnChoice:
    """`choice` with the task (and separator) named, or detected from the label cells."""
    check_task(task, separator)
    if choice.indicators:  # one 0/1 column per label: multi-label, whatever was asked
        if task not in (None, "multi_label"):
            raise ParseError(
                f"0/1 label columns ({choice.label}) hold several labels per row: the task "
                f"is multi_label, not {task}; or name one label_column instead",
                column="task",
            )
        return choice
    if task == "token_classification":
        raise ParseError(
            "entity tagging reads tagged words (a CoNLL file, or JSONL with tokens and tags "
            "or text and spans), not a table's columns; upload such a file instead",
            column="task",
        )
    read = (read_label(row.get(choice.label)) for row in table.rows[:SAMPLE_ROWS])
    cells = [c for c in read if c is not None]
    if task is None:
        task = detect_task(cells)
    if task == "multi_label" and separator is None:
        separator = multi_label.detect_separator(cells)
    return ColumnChoice(
        choice.text,
        choice.label,
        choice.text_pair,
        task=task,
        separator=separator if task == "multi_label" else None,
    )


def detect_task(cells: list[str]) -> str:
    """Regression for varied numbers with fractions or many values (ten to fifty whole
    numbers read as class ids: star ratings, coded categories); multi-label when a
    tenth of the cells hold several labels (a separator between short names, or a JSON
    list); classification otherwise, as every upload was before tasks."""
    if not cells:
        return "classification"
    numbers = []
    for cell in cells:
        try:
            numbers.append(regression.read_target(cell))
        except LabelProblem:
            break
    else:
        distinct = len(set(numbers))
        fractions = any(n is not None and not float(n).is_integer() for n in numbers)
        many = distinct >= MANY_NUMBERS or distinct > REGRESSION_DISTINCT * len(cells)
        if distinct >= 10 and (fractions or many):
            return "regression"
        return "classification"
    lists = sum(c.startswith("[") and c.endswith("]") for c in cells)
    separator = multi_label.detect_separator(cells)
    several = (
        sum(
            separator in c and all(0 < len(p.strip()) <= 64 for p in c.split(separator))
            for c in cells
        )
        if separator
        else 0
    )
    if max(lists, several) >= MULTI_SHARE * len(cells):
        return "multi_label"
    return "classification"
