"""What a Prediction is: one playground question (a text, an image or a conversation) or one
batch file put to a finished job's exported model, answered by a worker on the `predict`
queue."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.datasets.models import utcnow
from app.db import Base


class PredictionStatus(StrEnum):
    queued = "queued"
    succeeded = "succeeded"
    failed = "failed"


class PredictionKind(StrEnum):
    text = "text"  # one text (and its pair) typed in the playground
    image = "image"  # one image dropped in the playground
    batch = "batch"  # a file of texts or a ZIP of images → a CSV of predictions
    chat = "chat"  # a conversation a generation job's model answers, streamed into `result`


class Prediction(Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    # Who may see and use it (app/web/deps.py looks every row up by id *and* owner).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(8))
    # What the person gave, as data: the text itself (clipped), or the file's name.
    input_name: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default=PredictionStatus.queued)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # single: {"probabilities": {label: p}} highest first; batch: {"rows": n, "skipped": n}
    # chat: {"text", "done"} rewritten as the answer grows, then "tokens", "finish_reason"
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def finished(self) -> bool:
        return self.status != PredictionStatus.queued


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int
    kind: str
    input_name: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
