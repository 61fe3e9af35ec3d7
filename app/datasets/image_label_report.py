"""The validation report of an image dataset labelled by a file (image_labels.py).

Shaped like images.image_report (the page and the API read both alike), with what text
datasets add for their task: the task's summary under "labels", its errors and warnings,
and the labels file's problems by its line numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from app.datasets.image_labels import Findings, LabelledScan
from app.datasets.images import (
    MAX_NAMED,
    MAX_SKIPPED_LISTED,
    FileIssue,
    content_warnings,
    files_phrase,
    size_stats,
    skipped_warning,
)
from app.datasets.task_labels import summarise_labels
from app.datasets.validation import MAX_LINES, Issue, _rows_phrase, _where, class_warnings


def labelled_report(scan: LabelledScan) -> dict[str, Any]:
    """Errors block training; warnings are shown and training may go ahead."""
    images, choice, name = scan.images, scan.choice, scan.labels.name
    values = [image.label for image in images]
    summary = summarise_labels(choice, values)
    classes = choice.task == "classification"
    counts: Counter[Any] = Counter(values) if classes else Counter(summary.counts)
    errors = _file_errors(scan.findings, scan, name)
    if not images:
        msg = (
            f"no row of {name} names a usable image with a label; write one row per image: "
            f"its path in the ZIP (from {name}'s folder, or just its name) and its labels"
        )
        errors.append(Issue("no_usable_rows", msg))
    elif classes and len(counts) == 1:
        msg = (
            f"every usable image has the label '{next(iter(counts))}' in {name}; a classifier "
            "needs examples of at least two classes"
        )
        errors.append(Issue("one_class", msg))
    elif not classes:
        errors += [Issue(code, message) for code, message in summary.errors]
    warnings = skipped_warning(scan.issues) + _file_warnings(scan.findings, name)
    if classes:
        warnings += class_warnings(counts, "images")
    else:
        warnings += [Issue(code, message) for code, message in summary.warnings]
    warnings += content_warnings(images, name)
    unnamed = [
        FileIssue(path, f"not named in {name}; add a row for it to use it")
        for path in scan.findings.unmentioned
    ]
    skipped = sorted(scan.issues + unnamed, key=lambda issue: issue.path)
    return {
        "errors": [asdict(issue) for issue in errors],
        "warnings": [asdict(issue) for issue in warnings],
        "num_rows": len(images),
        "class_counts": dict(sorted(counts.items())),
        "image_size": size_stats(images),
        "skipped_files": [asdict(issue) for issue in skipped[:MAX_SKIPPED_LISTED]],
        "skipped_count": len(skipped),
        "labels_file": scan.labels.member,
        "labels": {
            "task": choice.task,
            "names": sorted(counts) if classes else summary.label_names,
            **summary.extra,
        },
    }


def _file_errors(findings: Findings, scan: LabelledScan, name: str) -> list[Issue]:
    errors = []
    if findings.unnamed:
        lines = findings.unnamed
        msg = (
            f"{_rows_phrase(len(lines))} of {name} name no file ({_where(lines)}); write the "
            f"image's path in the '{scan.labels.file_column}' column, or delete the row"
        )
        errors.append(Issue("missing_file_names", msg, lines[:MAX_LINES]))
    if findings.missing:
        lines = [line for line, _ in findings.missing]
        line, missing = findings.missing[0]
        msg = (
            f"{_rows_phrase(len(lines))} of {name} name files that are not in the archive "
            f"({_where(lines)}); line {line}: '{missing}'. Write each image's path from "
            f"{name}'s folder (or just its file name, when no other file has it), and add "
            "the missing images to the ZIP or delete their rows"
        )
        errors.append(Issue("missing_images", msg, lines[:MAX_LINES]))
    if findings.unreadable:
        lines = [line for line, _ in findings.unreadable]
        line, problem = findings.unreadable[0]
        if scan.choice.task == "regression":
            code = "non_numeric_targets"
            msg = (
                f"{_rows_phrase(len(lines))} of {name} have a target that is not a number "
                f"({_where(lines)}); line {line}: {problem}. Write a number such as 3.5, or "
                "leave the cell empty to skip the image"
            )
        else:
            code = "unreadable_labels"
            msg = (
                f"{_rows_phrase(len(lines))} of {name} have labels the {scan.choice.task} "
                f"task cannot read ({_where(lines)}); line {line}: {problem}"
            )
        errors.append(Issue(code, msg, lines[:MAX_LINES]))
    return errors


def _file_warnings(findings: Findings, name: str) -> list[Issue]:
    warnings = []
    if findings.no_label:
        lines = findings.no_label
        msg = (
            f"{_rows_phrase(len(lines))} of {name} have no label ({_where(lines)}); their "
            "images will be skipped, so fill in their labels to use them"
        )
        warnings.append(Issue("missing_labels", msg, lines[:MAX_LINES]))
    if findings.duplicates:
        lines = findings.duplicates
        msg = (
            f"{_rows_phrase(len(lines))} of {name} name a file an earlier row names "
            f"({_where(lines)}); only each file's first row is used, so delete the others"
        )
        warnings.append(Issue("duplicate_rows", msg, lines[:MAX_LINES]))
    if findings.unmentioned:
        files = findings.unmentioned
        shown = ", ".join(f"'{f}'" for f in files[:MAX_NAMED])
        more = f" and {len(files) - MAX_NAMED} more" if len(files) > MAX_NAMED else ""
        msg = (
            f"{files_phrase(len(files))} in the archive {'is' if len(files) == 1 else 'are'} "
            f"not named in {name} and will be skipped ({shown}{more}); add a row for each "
            "to use them"
        )
        warnings.append(Issue("unlabelled_images", msg))
    return warnings
