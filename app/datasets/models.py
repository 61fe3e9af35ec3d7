"""What a Dataset is: the table row and the JSON shapes the API reads and returns."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class Modality(StrEnum):
    text = "text"
    image = "image"


class DatasetStatus(StrEnum):
    """An upload is stored at once and checked by a worker (app/datasets/checking.py):
    `checking` until then, `ready` to train on, or `invalid` with the reason and no files."""

    checking = "checking"
    ready = "ready"
    invalid = "invalid"


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Who may see and use it (app/web/deps.py looks every row up by id *and* owner).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modality: Mapped[Modality] = mapped_column(String(16), default=Modality.text)
    format: Mapped[str] = mapped_column(String(16))  # csv, tsv, jsonl, parquet; zip (images)
    # Stored file names per part ("train", optionally "validation" and "test"), relative to
    # the dataset's own folder: a table file, or for images a folder of class folders (listed
    # in images.json). Requests never carry paths; these are the only ones used.
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    original_filename: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(Integer)
    # sha256 of the stored files: with the column choice it keys the feature cache.
    content_hash: Mapped[str] = mapped_column(String(64))
    # Images have no columns: their "columns" are the image path and its class folder.
    columns: Mapped[list[str]] = mapped_column(JSON)
    text_column: Mapped[str] = mapped_column(String(200))
    text_pair_column: Mapped[str | None] = mapped_column(String(200), nullable=True)
    label_column: Mapped[str] = mapped_column(String(200))
    # What the labels are (worker/training/tasks/): classification, multi_label, regression.
    # Detected from the label column at upload; changeable like the columns.
    task: Mapped[str] = mapped_column(String(32), default="classification")
    # Multi-label cells: the separator between labels ("|", ";", ","); None: JSON lists.
    label_separator: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # Multi-label as one 0/1 column per label: those columns (label_column then names them
    # for people, "sport, money, music"); None: the labels are in label_column's cells.
    label_columns: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # Generation: put first in every conversation that has no system message of its own
    # (tasks/conversations.with_system). For generation, text_column is the prompt column
    # and label_column the response column; a chat file has "messages" and "".
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    num_rows: Mapped[int] = mapped_column(Integer)
    label_names: Mapped[list[str]] = mapped_column(JSON)
    # validation.Report.to_dict() for the current column choice, plus per-part row counts;
    # for images images.image_report(), with image sizes and skipped files.
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    preview: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # While `checking`, the columns above hold what the upload asked for (a column choice, or
    # "" to detect one) and placeholders; the check fills them in.
    status: Mapped[DatasetStatus] = mapped_column(
        String(16), default=DatasetStatus.ready, index=True
    )
    rows_read: Mapped[int] = mapped_column(Integer, default=0)  # rows (or images) so far
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # share of the files read
    # `invalid`: the body a 422 carries (detail; line and column, member, or errors).
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    check_attempts: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def ready(self) -> bool:
        return self.status == DatasetStatus.ready

    @property
    def fingerprint(self) -> str:
        """Identity of the data as training sees it: content plus column and task choice.
        Classification keeps the form it always had, so old checkpoints still match."""
        base = f"{self.content_hash}:{self.text_column}:{self.text_pair_column}:{self.label_column}"
        if self.task == "classification":
            return base
        keyed = f"{base}:{self.task}:{self.label_separator}:{self.label_columns}"
        if self.system_prompt:  # it is part of every training text
            keyed += ":" + hashlib.sha256(self.system_prompt.encode()).hexdigest()[:16]
        return keyed


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int | None
    name: str
    created_at: datetime
    modality: Modality
    format: str
    original_filename: str
    size_bytes: int
    columns: list[str]
    text_column: str
    text_pair_column: str | None
    label_column: str
    task: str
    label_separator: str | None
    label_columns: list[str] | None
    system_prompt: str | None
    num_rows: int
    label_names: list[str]
    report: dict[str, Any]
    preview: list[dict[str, Any]]
    status: DatasetStatus
    rows_read: int
    progress: float
    error: dict[str, Any] | None


class ColumnsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_column: str
    label_column: str
    text_pair_column: str | None = None
    task: str | None = None  # None: keep the dataset's task
    label_separator: str | None = None
    # Multi-label: one 0/1 column per label (label_column is then ignored).
    label_columns: list[str] | None = None
    # Generation: the dataset-wide system prompt; None keeps it, "" removes it.
    system_prompt: str | None = None
