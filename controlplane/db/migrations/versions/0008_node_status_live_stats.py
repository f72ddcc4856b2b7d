"""why a node has its status; live statistics of nodes and kernels

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.add_column(
            sa.Column("status_info", sa.String(length=256), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("live_stat", sa.JSON(), nullable=True))
    with op.batch_alter_table("kernels") as batch_op:
        batch_op.add_column(sa.Column("live_stat", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kernels") as batch_op:
        batch_op.drop_column("live_stat")
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.drop_column("live_stat")
        batch_op.drop_column("status_info")
