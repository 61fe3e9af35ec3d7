"""comparisons and auto strategy

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_comparisons_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparisons")),
    )
    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comparisons_dataset_id"), ["dataset_id"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "resolved_strategy",
                sa.String(length=32),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("strategy_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("comparison_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_comparison_id"), ["comparison_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_comparison_id_comparisons"),
            "comparisons",
            ["comparison_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_jobs_comparison_id_comparisons"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_jobs_comparison_id"))
        batch_op.drop_column("comparison_id")
        batch_op.drop_column("strategy_reason")
        batch_op.drop_column("resolved_strategy")

    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comparisons_dataset_id"))

    op.drop_table("comparisons")
