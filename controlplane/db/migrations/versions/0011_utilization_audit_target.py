"""Utilization thresholds of resource policies; the audit log's target

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 04:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("utilization_window", "min_cpu_util_pct", "min_gpu_util_pct")


def upgrade() -> None:
    # existing policies keep the check off (0)
    with op.batch_alter_table("resource_policies") as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    # entries written before keep no target: the action's path still names it
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("target", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_column("target")
    with op.batch_alter_table("resource_policies") as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
