"""datasets: checked by a worker after the upload is stored; status, progress and the reason
an upload was refused

Rows made before this were checked inside the upload request: they are `ready`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="ready")
        )
        batch.add_column(sa.Column("rows_read", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("progress", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("error", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("check_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.create_index(batch.f("ix_datasets_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_index(batch.f("ix_datasets_status"))
        batch.drop_column("check_attempts")
        batch.drop_column("error")
        batch.drop_column("progress")
        batch.drop_column("rows_read")
        batch.drop_column("status")
