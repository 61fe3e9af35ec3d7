"""jobs: devices asked for, and the worker and device slots a running job holds; workers:
how many devices each announces (issue 16: several GPUs)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("devices", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("worker_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("device_ids", sa.JSON(), nullable=True))
    with op.batch_alter_table("workers") as batch:
        batch.add_column(
            sa.Column("device_count", sa.Integer(), nullable=False, server_default="1")
        )


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("device_count")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("device_ids")
        batch.drop_column("worker_id")
        batch.drop_column("devices")
