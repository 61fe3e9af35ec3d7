"""Checking table datasets (what makes a file usable) and changing their column choice.

Who calls the check and when is app/datasets/checking.py: a worker, after the upload is
stored. A file that fails it is answered with the reason and leaves no usable dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.ownership import owned, visible
from app.config import Settings
from app.datasets import chat_datasets
from app.datasets.columns import ColumnChoice, resolve_columns
from app.datasets.folders import part_paths
from app.datasets.models import Dataset, DatasetStatus, Modality
from app.datasets.parsing import DatasetFormat, ParseError, Table, read_table
from app.datasets.task_labels import with_task
from app.datasets.validation import DatasetInvalid, Issue, Report, validate

PREVIEW_ROWS = 20
PREVIEW_CHARS = 300


def _check(tables: dict[str, Table], choice: ColumnChoice) -> tuple[Report, dict[str, Any]]:
    """Validate every part with one column choice; errors from any part block."""
    reports = {name: validate(table, choice) for name, table in tables.items()}
    train = reports["train"]
    errors = list(train.errors)
    for name, report in reports.items():
        if name == "train":
            continue
        errors += [
            Issue(i.code, f"{name} file: {i.message}", i.lines)
            for i in report.errors
            if i.code not in ("one_class", "one_label", "constant_target")
        ]
        unseen = sorted(set(report.class_counts) - set(train.class_counts))
        if unseen:
            errors.append(
                Issue(
                    "unseen_labels",
                    f"{name} file has labels the training file "
                    f"lacks: {', '.join(unseen[:10])}; add training examples for them",
                )
            )
    summary = train.to_dict()
    summary["errors"] = [e.__dict__ for e in errors]
    summary["parts"] = {name: r.num_rows for name, r in reports.items()}
    if errors:
        raise DatasetInvalid(errors, summary)
    return train, summary


def _clip(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def _preview(table: Table, choice: ColumnChoice) -> list[dict[str, Any]]:
    cols = [c for c in (choice.text, choice.text_pair, *choice.label_cells) if c]
    rows = []
    for line, row in zip(table.lines[:PREVIEW_ROWS], table.rows[:PREVIEW_ROWS], strict=False):
        cells = {c: _clip(row.get(c)) for c in cols}
        rows.append({"line": line, **cells})
    return rows


def examine_tables(
    files: dict[str, Path],
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    text_pair_column: str | None = None,
    task: str | None = None,
    label_separator: str | None = None,
    label_columns: list[str] | None = None,
    row_cap: int | None = None,
    on_progress: Callable[[str, int, float], None] | None = None,
) -> dict[str, Any]:
    """Parse and validate a dataset's stored table files ("train", optionally "validation"
    and "test"; each named "<part>.<format>") with a column and task choice, detecting what
    is not given. Returns the dataset's fields; raises ParseError or DatasetInvalid."""
    tables = {}
    for part, path in files.items():
        progress = partial(on_progress, part) if on_progress else None
        fmt = DatasetFormat(path.name.rsplit(".", 1)[1])
        tables[part] = read_table(path, fmt, row_cap=row_cap, on_progress=progress)
    first = tables["train"]
    choice = resolve_columns(
        first,
        text=text_column,
        label=label_column,
        text_pair=text_pair_column,
        indicators=label_columns,
    )
    choice = with_task(first, choice, task, label_separator)
    report, summary = _check(tables, choice)
    return {
        "columns": first.columns,
        "text_column": choice.text,
        "text_pair_column": choice.text_pair,
        "label_column": choice.label,
        "task": choice.task,
        "label_separator": choice.separator,
        "label_columns": list(choice.indicators) if choice.indicators else None,
        "num_rows": report.num_rows,
        "label_names": report.labels["names"],
        "report": summary,
        "preview": _preview(first, choice),
    }


def read_parts(dataset: Dataset, settings: Settings) -> dict[str, Table]:
    return {
        part: read_table(path, DatasetFormat(path.suffix.removeprefix(".")))
        for part, path in part_paths(settings, dataset.id, dataset.files).items()
    }


def change_columns(
    session: Session,
    dataset: Dataset,
    *,
    settings: Settings,
    text: str,
    label: str,
    text_pair: str | None,
    task: str | None = None,
    label_separator: str | None = None,
    label_columns: list[str] | None = None,
    system_prompt: str | None = None,
) -> Dataset:
    """Re-validate with another column or task choice (task None: keep the dataset's, and
    its separator unless one is given); the old choice stays if the new one fails.
    Generation (text: the prompt column, label: the response column) is checked here and
    then again by a worker, which counts its tokens (chat_datasets.change_generation)."""
    if not dataset.ready:
        raise ParseError(f"dataset {dataset.id} is {dataset.status.value}: no columns to choose")
    if dataset.modality == Modality.image:
        raise ParseError("an image dataset has no columns to choose: its folders are its classes")
    if dataset.task == "token_classification":
        raise ParseError(
            "an entity-tagging dataset has no columns to choose: every word carries its tag"
        )
    if (task or dataset.task) == chat_datasets.NAME:
        return chat_datasets.change_generation(
            session,
            dataset,
            settings=settings,
            prompt=text,
            response=label,
            system_prompt=system_prompt,
        )
    if chat_datasets.chat_form(dataset):
        raise ParseError(
            "a chat file holds conversations, which only the generation task reads; "
            "upload a table to train another task"
        )
    tables = read_parts(dataset, settings)
    choice = resolve_columns(
        tables["train"], text=text, label=label, text_pair=text_pair, indicators=label_columns
    )
    if task is None:
        task = dataset.task
        label_separator = label_separator or dataset.label_separator
    choice = with_task(tables["train"], choice, task, label_separator)
    report, summary = _check(tables, choice)
    dataset.text_column = choice.text
    dataset.label_column = choice.label
    dataset.text_pair_column = choice.text_pair
    dataset.task = choice.task
    dataset.label_separator = choice.separator
    dataset.label_columns = list(choice.indicators) if choice.indicators else None
    dataset.system_prompt = None  # generation's only
    dataset.num_rows = report.num_rows
    dataset.label_names = report.labels["names"]
    dataset.report = summary
    dataset.preview = _preview(tables["train"], choice)
    session.commit()
    return dataset


def get_dataset(session: Session, dataset_id: int, user: User) -> Dataset | None:
    dataset = session.get(Dataset, dataset_id)
    return dataset if dataset is not None and visible(user, dataset) else None


def list_datasets(session: Session, user: User, *, ready_only: bool = False) -> list[Dataset]:
    query = select(Dataset).order_by(Dataset.id.desc())
    if ready_only:  # what jobs may be made on
        query = query.where(Dataset.status == DatasetStatus.ready)
    return list(session.scalars(owned(query, Dataset, user)))
