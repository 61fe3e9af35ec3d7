"""jobs and comparisons: the retired `probe_epochs` setting leaves their stored params

LP-FT's probe (and frozen features' head) is now fitted to convergence
(worker/training/head_fit.py), so no number of probe epochs exists any more; a stored one
would fail the strict settings model when a queued job starts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETIRED = "probe_epochs"


def upgrade() -> None:
    connection = op.get_bind()
    for table_name in ("jobs", "comparisons"):
        table = sa.table(table_name, sa.column("id", sa.Integer), sa.column("params", sa.JSON))
        for row_id, params in connection.execute(sa.select(table.c.id, table.c.params)):
            if isinstance(params, dict) and RETIRED in params:
                kept = {k: v for k, v in params.items() if k != RETIRED}
                connection.execute(sa.update(table).where(table.c.id == row_id).values(params=kept))


def downgrade() -> None:
    return  # the setting is not restored: the code that read it is gone
