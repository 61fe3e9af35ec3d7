"""What a Job is: its rows (job, metric points, log lines) and its API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Boolean, DateTime, Enum, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.datasets.models import Dataset, utcnow
from app.db import Base
from app.jobs.params import JobParams
from app.jobs.strategies import Strategy


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


def _enum(enum: type[StrEnum], length: int) -> Enum:
    """Stored as the plain value string (VARCHAR), read back as the enum member."""
    return Enum(
        enum, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Who may see and use it (app/web/deps.py looks every row up by id *and* owner).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    model: Mapped[str] = mapped_column(String(300))
    strategy: Mapped[Strategy] = mapped_column(_enum(Strategy, 32))
    # What an "auto" job chose when it started, and why, in one sentence.
    resolved_strategy: Mapped[Strategy | None] = mapped_column(_enum(Strategy, 32), nullable=True)
    strategy_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    comparison_id: Mapped[int | None] = mapped_column(
        ForeignKey("comparisons.id"), nullable=True, index=True
    )
    device: Mapped[Device] = mapped_column(_enum(Device, 8), default=Device.auto)
    # The broker queue its message went to ("cpu" or "gpu"; app/workers/service.queue_for).
    queue: Mapped[str] = mapped_column(String(16), default="cpu")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, 16), default=JobStatus.queued, index=True
    )
    phase: Mapped[str] = mapped_column(String(32), default="queued")
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Devices asked for (params["devices"], here too so a worker's claim can filter on it);
    # while running: the worker that holds it and which of its device slots (GPU indexes).
    devices: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    device_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Final figures from the training run (test metrics, speed, parameter counts).
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Set once export.zip has been published in the job folder.
    export_ready: Mapped[bool] = mapped_column(Boolean, default=False)

    dataset: Mapped[Dataset] = relationship(lazy="joined")

    @property
    def effective_strategy(self) -> Strategy:
        return self.resolved_strategy or self.strategy

    @property
    def progress(self) -> float:
        if self.status == JobStatus.succeeded:
            return 1.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


class MetricPoint(Base):
    """One value of one chart series at one step; the charts are rebuilt from these rows."""

    __tablename__ = "metric_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class JobLog(Base):
    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    message: Mapped[str] = mapped_column(Text)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: int = Field(ge=1, le=2**31 - 1)
    model: str = Field(description="A catalogue id from GET /api/v1/models")
    strategy: Strategy
    device: Device = Device.auto
    params: JobParams = Field(default_factory=JobParams)


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int | None
    created_at: datetime
    dataset_id: int
    model: str
    strategy: Strategy
    resolved_strategy: Strategy | None
    strategy_reason: str | None
    comparison_id: int | None
    device: Device
    queue: str
    params: dict[str, Any]
    status: JobStatus
    phase: str
    progress: float
    step: int
    total_steps: int
    eta_seconds: float | None
    attempts: int
    cancel_requested: bool
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    results: dict[str, Any] | None
    export_ready: bool


class MetricSeries(BaseModel):
    """Chart series: name -> parallel lists of steps, epochs and values."""

    job_id: int
    status: JobStatus
    series: dict[str, dict[str, list[float]]]
    overfitting: dict[str, Any] | None = None  # {"epoch", "message"} once the curves show it
