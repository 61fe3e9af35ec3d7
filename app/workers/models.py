"""What a Worker is: a training or predict process that announces itself with a heartbeat,
so the dashboard can show who is alive and jobs can be routed to a queue someone consumes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.datasets.models import utcnow
from app.db import Base


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # "hostname:pid"
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(JSON)
    device: Mapped[str] = mapped_column(String(200))  # "cpu (16 cores)", "cuda: NVIDIA H100"
    # Device slots: its GPUs (or TUNEBOARD_WORKER_DEVICES); a job holds one or more of them.
    device_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkerOut(BaseModel):
    """Hostnames and process ids are for admins: others see "worker 1", "worker 2"…"""

    model_config = ConfigDict(from_attributes=True)

    id: str
    hostname: str | None
    pid: int | None
    queues: list[str]
    device: str
    device_count: int
    # Device slot → the running job holding it (None: a job this viewer may not see);
    # a slot not listed is free.
    busy_devices: dict[int, int | None] = {}
    started_at: datetime
    last_seen: datetime


class Fleet(BaseModel):
    """What the dashboard shows: live workers and how many jobs wait on each queue."""

    workers: list[WorkerOut]
    queue_depth: dict[str, int]
