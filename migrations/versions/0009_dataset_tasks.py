"""datasets: the task their labels are for, and a multi-label separator

Every dataset so far holds one class per row: `classification`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(
            sa.Column("task", sa.String(32), nullable=False, server_default="classification")
        )
        batch.add_column(sa.Column("label_separator", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("label_separator")
        batch.drop_column("task")
