"""Image datasets labelled by a file: a ZIP of images with labels.csv or labels.jsonl.

Class folders say one class per image; a labels file can also give several labels per image
(multi-label) or a number (regression). It sits at the archive's root or in its single top
folder, and each row names an image by its path relative to that folder, or by its base name
when no other file has that name. Label cells are read exactly as a table's label column is
(task_labels), so the task, its detection and its report are those of text datasets; every
named image gets the per-file checks class folders get (images.judge_file).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from app.datasets.columns import LABEL_NAMES, ColumnChoice
from app.datasets.images import PROGRESS_EVERY, FileIssue, ImageInfo, judge_file
from app.datasets.parsing import (
    LONE_SURROGATE,
    ParseError,
    Table,
    detect_format,
    read_table,
)
from app.datasets.task_labels import SAMPLE_ROWS, detect_task, label_reader
from app.datasets.validation import DatasetInvalid, Issue
from worker.training.tasks import multi_label
from worker.training.tasks.base import LabelProblem
from worker.training.tasks.classification import read_label
from worker.training.tasks.tagged_formats import lone_surrogate

LABELS_FILES = ("labels.csv", "labels.jsonl")
FILE_COLUMNS = ("file", "filename", "image", "path")
LABEL_COLUMNS = tuple(
    dict.fromkeys(("labels", "label", "tags", "target", "value", "score", *LABEL_NAMES))
)
NUMBER_KEYS = ("target", "value", "score", "rating")  # JSONL numbers under these: regression


@dataclass
class LabelRow:
    line: int
    name: str  # the file column, stripped
    cell: Any  # the label cell as a table holds it (a JSONL list: its JSON text)


@dataclass
class LabelsFile:
    member: str  # its path in the archive
    file_column: str
    label_column: str
    rows: list[LabelRow]
    numbers: bool = False  # JSONL numbers under a NUMBER_KEYS key: a regression target

    @property
    def name(self) -> str:
        return PurePosixPath(self.member).name

    @property
    def folder(self) -> str:
        """The folder its file names are relative to: "" (the root) or the top folder."""
        parent = str(PurePosixPath(self.member).parent)
        return "" if parent == "." else parent


@dataclass
class Findings:
    """What matching the labels file to the archive found, for the report."""

    unnamed: list[int] = field(default_factory=list)  # lines with no file name
    missing: list[tuple[int, str]] = field(default_factory=list)  # (line, name) not found
    unreadable: list[tuple[int, str]] = field(default_factory=list)  # (line, problem)
    no_label: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)  # later rows for one file
    unmentioned: list[str] = field(default_factory=list)  # archive files no row names


@dataclass
class LabelledScan:
    images: list[ImageInfo]
    issues: list[FileIssue]  # named images that cannot be used
    findings: Findings
    labels: LabelsFile
    choice: ColumnChoice  # the task and separator the cells were read with


def find_labels_file(files: list[str]) -> str | None:
    """The archive's labels file: at its root, or in the one folder that holds everything."""
    tops = {PurePosixPath(f).parts[0] for f in files}
    found = [
        f
        for f in files
        if (parts := PurePosixPath(f).parts)[-1].lower() in LABELS_FILES
        and (len(parts) == 1 or (len(parts) == 2 and len(tops) == 1))
    ]
    if len(found) > 1:
        msg = (
            f"the archive has two labels files ({' and '.join(found)}); keep one, "
            "labels.csv or labels.jsonl"
        )
        raise DatasetInvalid([Issue("two_labels_files", msg)])
    return found[0] if found else None


def read_labels_file(root: Path, member: str) -> LabelsFile:
    """Its rows and which column holds what; ParseError names the file and the line."""
    name = PurePosixPath(member).name
    path = root / member
    try:
        if name.lower().endswith(".jsonl"):
            table, numbers = _read_jsonl(path.read_bytes())
        else:
            with path.open("rb") as f:
                fmt = detect_format(name, f.read(4096))  # a tab-separated labels.csv too
            table, numbers = read_table(path, fmt), set()
    except ParseError as err:
        raise ParseError(f"{name}: {err.message}", line=err.line, column=err.column) from None
    file_column, label_column = _columns(table, name, header=not name.lower().endswith(".jsonl"))
    rows = [
        LabelRow(line, read_label(row.get(file_column)) or "", row.get(label_column))
        for line, row in zip(table.lines, table.rows, strict=True)
    ]
    is_number = label_column in numbers and label_column.lower() in NUMBER_KEYS
    return LabelsFile(member, file_column, label_column, rows, numbers=is_number)


def _read_jsonl(data: bytes) -> tuple[Table, set[str]]:
    """One object per line, as an uploaded JSONL table is read, except that a label may be a
    list: it becomes its JSON text, which multi_label reads as a list. Also returns the keys
    that hold numbers only."""
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("the file is not UTF-8 text; save it as UTF-8") from None
    columns: dict[str, None] = {}  # an ordered set
    rows, lines, kinds = [], [], defaultdict(set)
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw, parse_constant=lambda _: None)
            halved = lone_surrogate(raw, value)
        except RecursionError:
            raise ParseError("nested too deeply to read", line=number) from None
        except ValueError as exc:
            raise ParseError(f"not valid JSON ({exc})", line=number) from None
        if halved:
            raise ParseError(LONE_SURROGATE, line=number)
        if not isinstance(value, dict):
            example = '{"file": "a.png", "labels": ["x", "y"]}'
            raise ParseError(f"write one JSON object a line, like {example}", line=number)
        for key, cell in value.items():
            if isinstance(cell, dict):
                msg = f"the value of '{key}' is an object; write text, a number or a list"
                raise ParseError(msg, line=number, column=key)
            columns.setdefault(key)
            kinds[key].add(_kind(cell))
            if isinstance(cell, list):
                value[key] = json.dumps(cell)
        rows.append(value)
        lines.append(number)
    if not rows:
        raise ParseError("the file is empty; write one JSON object per line")
    numbers = {k for k, seen in kinds.items() if "number" in seen and seen <= {"number", "null"}}
    return Table(list(columns), rows, lines), numbers


def _kind(cell: Any) -> str:
    if cell is None:
        return "null"
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        return "number"
    return type(cell).__name__


def _columns(table: Table, name: str, *, header: bool) -> tuple[str, str]:
    """(file column, label column): the file column by its name, the label column by its
    name or as the one other column. `header`: a CSV's (its line 1), not JSONL keys."""
    by_lower = {c.lower(): c for c in table.columns}
    file_column = next((by_lower[c] for c in FILE_COLUMNS if c in by_lower), None)
    others = [c for c in table.columns if c != file_column]
    label_column = next((by_lower[c] for c in LABEL_COLUMNS if by_lower.get(c) in others), None)
    if label_column is None and len(others) == 1:
        label_column = others[0]
    if file_column is None or label_column is None:
        msg = (
            f"{name} needs a column naming each image ({', '.join(FILE_COLUMNS)}) and one "
            f"holding its labels ({', '.join(LABEL_COLUMNS[:6])}); it has "
            f"{'columns' if header else 'keys'} {', '.join(table.columns)}. "
            + ("Rename its header to file,labels" if header else 'Write {"file": …, "labels": …}')
        )
        raise DatasetInvalid([Issue("labels_file_columns", msg, [1] if header else [])])
    return file_column, label_column


def choose_task(labels: LabelsFile, task: str | None, separator: str | None) -> ColumnChoice:
    """The task named, or detected from the cells as a table's is; the separator likewise."""
    read = (read_label(row.cell) for row in labels.rows[:SAMPLE_ROWS])
    cells = [c for c in read if c is not None]
    if task is None:
        task = "regression" if labels.numbers else detect_task(cells)
    if task == "multi_label" and separator is None:
        separator = multi_label.detect_separator(cells)
    separator = separator if task == "multi_label" else None
    return ColumnChoice("file", labels.label_column, task=task, separator=separator)


class _Archive:
    """The archive's files as a labels file names them: relative to its folder, or by base
    name when that is unique."""

    def __init__(self, files: list[str], labels: LabelsFile) -> None:
        self.prefix = f"{labels.folder}/" if labels.folder else ""
        self.files = {
            f.removeprefix(self.prefix): f
            for f in files
            if f.startswith(self.prefix) and f != labels.member
        }
        named = defaultdict(list)
        for relative, f in self.files.items():
            named[PurePosixPath(relative).name].append(f)
        self.by_name = {name: found[0] for name, found in named.items() if len(found) == 1}

    def find(self, name: str) -> str | None:
        name = name.replace("\\", "/").lstrip("/")
        while name.startswith("./"):
            name = name[2:]
        name = name.removeprefix(self.prefix) if name not in self.files else name
        return self.files.get(name) or self.by_name.get(name)


def scan_labelled(
    root: Path,
    files: list[str],
    member: str,
    max_pixels: int,
    on_progress: Callable[[int, float], None] | None = None,
    *,
    task: str | None = None,
    separator: str | None = None,
) -> LabelledScan:
    """Read the labels file `member` of the archive extracted at `root`, match its rows to
    `files` and judge every image a row labels. The task and separator are those named
    (a validation or test archive: the training archive's), or detected from the cells."""
    labels = read_labels_file(root, member)
    choice = choose_task(labels, task, separator)
    read = label_reader(choice)
    archive = _Archive(files, labels)
    findings = Findings()
    chosen: dict[str, Any] = {}  # archive path -> label
    seen: set[str] = set()
    for row in labels.rows:
        if not row.name:
            findings.unnamed.append(row.line)
            continue
        path = archive.find(row.name)
        if path is None:
            findings.missing.append((row.line, row.name))
            continue
        if path in seen:
            findings.duplicates.append(row.line)
            continue
        seen.add(path)
        try:
            label = read(row.cell)
        except LabelProblem as problem:
            findings.unreadable.append((row.line, str(problem)))
            continue
        if label is None:
            findings.no_label.append(row.line)
        else:
            chosen[path] = label
    findings.unmentioned = sorted(set(archive.files.values()) - seen)
    images: list[ImageInfo] = []
    issues: list[FileIssue] = []
    for done, path in enumerate(sorted(chosen), start=1):
        if on_progress is not None and done % PROGRESS_EVERY == 0:
            on_progress(done, done / len(chosen))
        judged = judge_file(root, path, chosen[path], max_pixels)
        if isinstance(judged, ImageInfo):
            images.append(judged)
        else:
            issues.append(judged)
    return LabelledScan(images, issues, findings, labels, choice)
