"""Apply Alembic migrations programmatically (used by the CLI and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

ROOT = Path(__file__).resolve().parents[1]


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    # A connection given here wins over the settings' URL (tests migrate a second database).
    config.attributes["connection"] = connection
    return config


def upgrade_head(connection: Connection | None = None) -> None:
    command.upgrade(alembic_config(connection), "head")


def downgrade_base(connection: Connection | None = None) -> None:
    command.downgrade(alembic_config(connection), "base")
