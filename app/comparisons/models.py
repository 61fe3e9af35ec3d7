"""What a Comparison is: a group of jobs that differ only in strategy, and its API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import JSON, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.datasets.models import Dataset, utcnow
from app.db import Base
from app.jobs.models import Device, Job, JobOut
from app.jobs.params import JobParams
from app.jobs.strategies import CONCRETE, Strategy

# A test score of the dataset's task (worker/training/tasks/: "macro_f1", "accuracy",
# "mae", …); when not given, the task's headline for the comparison's settings.
Metric = str


class Comparison(Base):
    __tablename__ = "comparisons"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Who may see and use it (app/web/deps.py looks every row up by id *and* owner).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    model: Mapped[str] = mapped_column(String(300))
    # The test metric that picks the winner.
    metric: Mapped[str] = mapped_column(String(16), default="macro_f1")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)

    dataset: Mapped[Dataset] = relationship(lazy="joined")
    jobs: Mapped[list[Job]] = relationship(order_by=Job.id, lazy="selectin")


class ComparisonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: int = Field(ge=1, le=2**31 - 1)
    model: str
    strategies: list[Strategy] = Field(
        default_factory=lambda: list(CONCRETE),
        min_length=2,
        max_length=len(CONCRETE),
        description="the strategies to run (default: every one the dataset's task offers)",
    )
    metric: Metric | None = Field(
        None,
        max_length=32,
        description="the test score that picks the winner (default: the task's headline)",
    )
    device: Device = Device.auto
    params: JobParams = Field(default_factory=JobParams)

    @field_validator("strategies")
    @classmethod
    def _distinct_concrete(cls, value: list[Strategy]) -> list[Strategy]:
        if Strategy.auto in value:
            raise ValueError("compare concrete strategies; 'auto' picks one of them")
        if len(set(value)) != len(value):
            raise ValueError("each strategy may appear once")
        return value


class ComparisonRow(BaseModel):
    """One job in the side-by-side table."""

    job: JobOut
    metric: float | None  # the test score the comparison ranks by
    scores: dict[str, float | None] = {}  # every test score of the task, named without test_
    wall_seconds: float | None
    examples_per_second: float | None
    tokens_per_second: float | None = None  # text models that trained through their layers
    trainable_params: int | None
    peak_memory_bytes: int | None


class ComparisonOut(BaseModel):
    id: int
    created_at: datetime
    dataset_id: int
    model: str
    metric: Metric
    job_ids: list[int]
    finished: bool
    rows: list[ComparisonRow]
    winner_job_id: int | None
    cheapest_job_id: int | None  # the fastest run within one point of the winner
    summary: str | None
