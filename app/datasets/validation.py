"""Is this table fit to train on? Errors block; warnings are shown and training may go ahead.

One pass over the rows decides everything, so a large upload is judged as quickly as it is
read. Rows without a label or without text are skipped, never guessed at: the report lists
their lines so the person can fix them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from app.datasets.columns import ColumnChoice
from app.datasets.parsing import ParseError, Table
from app.datasets.task_labels import LabelReader, label_reader, summarise_labels
from worker.training.tasks.base import LabelProblem

MAX_LINES = 20  # example lines kept per issue: enough to find the pattern, not a second copy
FEW_EXAMPLES = 10
IMBALANCE_RATIO = 10
MOSTLY_UNIQUE = 0.5  # more classes than this share of the rows: not a label column


@dataclass
class Issue:
    code: str
    message: str  # what is wrong and what to do about it
    lines: list[int] = field(default_factory=list)


@dataclass
class Report:
    errors: list[Issue]
    warnings: list[Issue]
    num_rows: int  # usable rows
    class_counts: dict[str, int]  # sorted by label (multi-label: rows per label)
    text_length: dict[str, float]  # min, mean, median, max in characters
    # The task's own summary: the head's label names, label histograms, co-occurrence…
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(
            errors=[Issue(**issue) for issue in data.get("errors", [])],
            warnings=[Issue(**issue) for issue in data.get("warnings", [])],
            num_rows=int(data.get("num_rows", 0)),
            class_counts=dict(data.get("class_counts", {})),
            text_length=dict(data.get("text_length", {})),
            labels=dict(data.get("labels", {})),
        )


@dataclass
class DatasetInvalid(ValueError):
    """The upload parsed but cannot be trained on; ``errors`` say why."""

    errors: list[Issue]
    report: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(e.message for e in self.errors)


@dataclass
class Examples:
    texts: list[str]
    text_pairs: list[str] | None
    labels: list[Any]  # as the task reads a cell: a class name, a list of names, a number
    lines: list[int]


def cell_text(value: Any) -> str:
    return "" if value is None else str(value)


def _rows(
    table: Table, choice: ColumnChoice, read: LabelReader
) -> Iterator[tuple[int, str, str | None, Any]]:
    """(line, text, text pair, label) for every row, before anything is skipped; a label the
    task cannot read is its LabelProblem."""
    for line, row in zip(table.lines, table.rows, strict=True):
        pair = cell_text(row.get(choice.text_pair)) if choice.text_pair else None
        try:
            label = read(_label_cell(row, choice))
        except LabelProblem as problem:
            label = problem
        yield line, cell_text(row.get(choice.text)), pair, label


def _label_cell(row: dict[str, Any], choice: ColumnChoice) -> Any:
    """The label cell, or with 0/1 columns the names of those holding 1."""
    if choice.indicators is None:
        return row.get(choice.label)
    return [c for c in choice.indicators if str(row.get(c)).strip().lower() in ("1", "1.0", "true")]


def _usable(text: str, pair: str | None) -> bool:
    return bool(text.strip()) and (pair is None or bool(pair.strip()))


def extract_examples(table: Table, choice: ColumnChoice) -> Examples:
    """The rows a model trains on: a label present and text not empty."""
    examples = Examples([], [] if choice.text_pair else None, [], [])
    for line, text, pair, label in _rows(table, choice, label_reader(choice)):
        if label is None or isinstance(label, LabelProblem) or not _usable(text, pair):
            continue
        examples.texts.append(text)
        if examples.text_pairs is not None and pair is not None:
            examples.text_pairs.append(pair)
        examples.labels.append(label)
        examples.lines.append(line)
    return examples


def _where(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:5])
    return (
        f"line {shown}"
        if len(lines) == 1
        else f"lines {shown}" + (", ..." if len(lines) > 5 else "")
    )


def _rows_phrase(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def validate(table: Table, choice: ColumnChoice) -> Report:
    roles = (
        ("text", choice.text),
        *(("label", cell) for cell in choice.label_cells),
        ("text_pair", choice.text_pair),
    )
    missing = [(role, col) for role, col in roles if col and col not in table.columns]
    if missing:
        have = ", ".join(table.columns)
        absent = [
            Issue(
                f"no_{role}_column",
                f"the file has no column '{col}' for the {role}; it has: {have}",
            )
            for role, col in missing
        ]
        return Report(absent, [], 0, {}, _lengths([]))

    counts: Counter[str] = Counter()
    values: list[Any] = []
    lengths: list[int] = []
    no_label: list[int] = []
    no_text: list[int] = []
    unreadable: list[tuple[int, str]] = []
    duplicates: list[int] = []
    seen: dict[tuple[str, str | None], tuple[Any, int]] = {}  # text -> first label and line
    conflicts: dict[tuple[str, str | None], list[int]] = {}
    for line, text, pair, label in _rows(table, choice, label_reader(choice)):
        if isinstance(label, LabelProblem):
            unreadable.append((line, str(label)))
            continue
        if label is None:
            no_label.append(line)
            continue
        if not _usable(text, pair):
            no_text.append(line)
            continue
        values.append(label)
        if choice.task == "classification":
            counts[label] += 1
        lengths.append(len(text))
        key = (text, pair)
        first_label, first_line = seen.setdefault(key, (label, line))
        if first_line == line:
            continue
        if first_label == label and key not in conflicts:
            duplicates.append(line)
        else:
            conflicts.setdefault(key, [first_line]).append(line)

    errors: list[Issue] = []
    if unreadable:
        lines = [line for line, _ in unreadable]
        first_line, first_problem = unreadable[0]
        msg = (
            f"{_rows_phrase(len(lines))} have a label the {choice.task} task cannot read "
            f"({_where(lines)}); line {first_line}: {first_problem}"
        )
        errors.append(Issue("unreadable_labels", msg, lines[:MAX_LINES]))
    summary = summarise_labels(choice, values)
    if choice.task != "classification":
        counts = Counter(summary.counts)
    if not values:
        msg = (
            f"no row has both a text in '{choice.text}' and a label in '{choice.label}'; "
            "check that these are the right columns"
        )
        errors.append(Issue("no_usable_rows", msg))
    elif choice.task != "classification":
        errors += [Issue(code, message) for code, message in summary.errors]
    elif len(counts) == 1:
        msg = (
            f"every usable row has the label '{next(iter(counts))}'; a classifier needs "
            "examples of at least two classes"
        )
        errors.append(Issue("one_class", msg))
    elif len(counts) > MOSTLY_UNIQUE * counts.total() and counts.total() >= 10:
        # Nothing can be learned, or even split, when nearly every row is its own class:
        # that is a column of texts or ids chosen as the label (or numbers: a regression).
        msg = (
            f"'{choice.label}' has {len(counts)} different values in {counts.total()} rows, "
            "so nearly every row would be a class of its own; it looks like a column of "
            "texts or ids. Choose the column that holds the class names (or, if it holds "
            "numbers to predict, the regression task)"
        )
        errors.append(Issue("labels_look_unique", msg))
    warnings = _skipped(no_label, no_text)
    if choice.task == "classification":
        warnings += class_warnings(counts)
    else:
        warnings += [Issue(code, message) for code, message in summary.warnings]
    if duplicates:
        msg = (
            f"{_rows_phrase(len(duplicates))} repeat an earlier row's text and label "
            f"({_where(duplicates)}); duplicates can land in both the training and the test "
            "split and make the scores look better than they are"
        )
        warnings.append(Issue("duplicates", msg, duplicates[:MAX_LINES]))
    if conflicts:
        lines = sorted(n for group in conflicts.values() for n in group)
        msg = (
            f"{len(conflicts)} {'text appears' if len(conflicts) == 1 else 'texts appear'} with "
            f"different labels ({_where(lines)}); decide on one label for each"
        )
        warnings.append(Issue("conflicting_labels", msg, lines[:MAX_LINES]))
    class_counts = dict(sorted(counts.items()))
    labels = {"task": choice.task, "names": summary.label_names, **summary.extra}
    if choice.task == "classification":
        labels["names"] = sorted(class_counts)
    return Report(errors, warnings, len(values), class_counts, _lengths(lengths), labels)


def _skipped(no_label: list[int], no_text: list[int]) -> list[Issue]:
    warnings = []
    if no_label:
        msg = (
            f"{_rows_phrase(len(no_label))} without a label will be skipped "
            f"({_where(no_label)}); fill in their labels to use them"
        )
        warnings.append(Issue("missing_labels", msg, no_label[:MAX_LINES]))
    if no_text:
        msg = f"{_rows_phrase(len(no_text))} with empty text will be skipped ({_where(no_text)})"
        warnings.append(Issue("empty_texts", msg, no_text[:MAX_LINES]))
    return warnings


def class_warnings(counts: Counter[str], noun: str = "examples") -> list[Issue]:
    """Few examples in some class, or classes far apart in size; `noun` names what is
    counted ("examples", "images")."""
    if len(counts) < 2:
        return []
    warnings = []
    few = sorted(label for label, n in counts.items() if n < FEW_EXAMPLES)
    if few:
        names = ", ".join(f"'{_short(label)}' ({counts[label]})" for label in few[:10])
        more = f" and {len(few) - 10} more" if len(few) > 10 else ""
        msg = (
            f"some classes have fewer than {FEW_EXAMPLES} {noun}: {names}{more}; the model "
            f"will learn them poorly and their scores will be noisy, so add {noun} if you can"
        )
        warnings.append(Issue("few_examples", msg))
    (top, most), (bottom, least) = max(counts.items(), key=_count), min(counts.items(), key=_count)
    if most > IMBALANCE_RATIO * least:
        msg = (
            f"the classes are imbalanced: '{_short(top)}' has {most} {noun} but "
            f"'{_short(bottom)}' only "
            f"{least}; accuracy will flatter the model, so judge it by macro F1"
        )
        warnings.append(Issue("imbalance", msg))
    return warnings


def _short(label: str, limit: int = 40) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _count(item: tuple[str, int]) -> tuple[int, str]:
    return item[1], item[0]


def _lengths(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {"min": 0.0, "mean": 0.0, "median": 0.0, "max": 0.0}
    return {
        "min": float(min(lengths)),
        "mean": round(sum(lengths) / len(lengths), 1),
        "median": float(statistics.median(lengths)),
        "max": float(max(lengths)),
    }


def report_from_parse_error(err: ParseError) -> Report:
    """A file that cannot be read gets the same kind of report as one that can."""
    codes = {"label_column": "no_label_column", "text_column": "no_text_column"}
    code = codes.get(err.column or "", "unreadable_rows" if err.line else "unreadable_file")
    lines = [err.line] if err.line else []
    return Report([Issue(code, str(err), lines)], [], 0, {}, _lengths([]))
