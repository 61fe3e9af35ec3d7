"""Creating datasets from uploads and changing their column choice.

A dataset row exists only for files that parse and pass validation: a bad file is answered
with the reason and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.quotas import check_storage
from app.config import Settings
from app.datasets.columns import ColumnChoice, resolve_columns
from app.datasets.image_datasets import create_image_dataset, is_image_archive
from app.datasets.models import Dataset, Modality
from app.datasets.parsing import DatasetFormat, ParseError, Table, detect_format, read_table
from app.datasets.uploads import StoredUpload
from app.datasets.validation import DatasetInvalid, Issue, Report, validate

PREVIEW_ROWS = 20
PREVIEW_CHARS = 300


@dataclass
class _Part:
    name: str
    upload: StoredUpload
    format: DatasetFormat
    table: Table


def _read_part(name: str, upload: StoredUpload) -> _Part:
    with upload.path.open("rb") as f:
        head = f.read(4096)
    fmt = detect_format(upload.original_filename, head)
    return _Part(name, upload, fmt, read_table(upload.path, fmt))


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
            if i.code != "one_class"
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
    cols = [c for c in (choice.text, choice.text_pair, choice.label) if c]
    rows = []
    for line, row in zip(table.lines[:PREVIEW_ROWS], table.rows[:PREVIEW_ROWS], strict=False):
        cells = {c: _clip(row.get(c)) for c in cols}
        rows.append({"line": line, **cells})
    return rows


def create_dataset(
    session: Session,
    *,
    settings: Settings,
    name: str | None,
    train: StoredUpload,
    validation: StoredUpload | None = None,
    test: StoredUpload | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    text_pair_column: str | None = None,
    owner: User,
) -> Dataset:
    """Parse, validate and keep an upload: a table of texts, or a ZIP of image class
    folders (image_datasets.py). Raises ParseError, ArchiveError or DatasetInvalid; the
    caller removes the temporary files either way."""
    uploads = [u for u in (train, validation, test) if u is not None]
    check_storage(session, settings, owner, sum(u.size for u in uploads))
    zips = [is_image_archive(u) for u in uploads]
    if zips[0]:
        if not all(zips):
            raise ParseError(
                "the training file is a ZIP of images but a validation or test file is not; "
                "upload class-folder ZIPs for every part"
            )
        return create_image_dataset(
            session,
            settings=settings,
            name=name,
            train=train,
            validation=validation,
            test=test,
            owner=owner,
        )
    parts = [_read_part("train", train)]
    if validation is not None:
        parts.append(_read_part("validation", validation))
    if test is not None:
        parts.append(_read_part("test", test))
    first = parts[0].table
    choice = resolve_columns(
        first, text=text_column, label=label_column, text_pair=text_pair_column
    )
    report, summary = _check({p.name: p.table for p in parts}, choice)

    content_hash = hashlib.sha256("".join(p.upload.sha256 for p in parts).encode()).hexdigest()
    dataset = Dataset(
        owner_id=owner.id,
        name=(name or train.original_filename).strip()[:200] or "dataset",
        format=parts[0].format.value,
        files={p.name: f"{p.name}.{p.format.value}" for p in parts},
        original_filename=train.original_filename,
        size_bytes=sum(p.upload.size for p in parts),
        content_hash=content_hash,
        columns=first.columns,
        text_column=choice.text,
        text_pair_column=choice.text_pair,
        label_column=choice.label,
        num_rows=report.num_rows,
        label_names=sorted(report.class_counts),
        report=summary,
        preview=_preview(first, choice),
    )
    session.add(dataset)
    session.flush()  # the id names the folder
    folder = settings.datasets_dir / str(dataset.id)
    try:
        folder.mkdir(parents=True, exist_ok=False)
        for p in parts:
            shutil.move(p.upload.path, folder / dataset.files[p.name])
        session.commit()
    except BaseException:
        session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return dataset


def read_parts(dataset: Dataset, settings: Settings) -> dict[str, Table]:
    folder = settings.datasets_dir / str(dataset.id)
    # Stored names are "<part>.<format>", written by create_dataset.
    return {
        part: read_table(folder / filename, DatasetFormat(filename.rsplit(".", 1)[1]))
        for part, filename in dataset.files.items()
    }


def change_columns(
    session: Session,
    dataset: Dataset,
    *,
    settings: Settings,
    text: str,
    label: str,
    text_pair: str | None,
) -> Dataset:
    """Re-validate with another column choice; the old choice stays if the new one fails."""
    if dataset.modality == Modality.image:
        raise ParseError("an image dataset has no columns to choose: its folders are its classes")
    tables = read_parts(dataset, settings)
    choice = resolve_columns(tables["train"], text=text, label=label, text_pair=text_pair)
    report, summary = _check(tables, choice)
    dataset.text_column = choice.text
    dataset.label_column = choice.label
    dataset.text_pair_column = choice.text_pair
    dataset.num_rows = report.num_rows
    dataset.label_names = sorted(report.class_counts)
    dataset.report = summary
    dataset.preview = _preview(tables["train"], choice)
    session.commit()
    return dataset


def get_dataset(session: Session, dataset_id: int, user: User) -> Dataset | None:
    dataset = session.get(Dataset, dataset_id)
    return (
        dataset if dataset is not None and (user.is_admin or dataset.owner_id == user.id) else None
    )


def list_datasets(session: Session, user: User) -> list[Dataset]:
    query = select(Dataset).order_by(Dataset.id.desc())
    if not user.is_admin:
        query = query.where(Dataset.owner_id == user.id)
    return list(session.scalars(query))
