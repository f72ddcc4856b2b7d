"""batch pipelines: scheduled starts and dependencies between sessions

Existing sessions get no start time and no dependencies: they are scheduled as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UTCDateTime


revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.add_column(sa.Column("starts_at", UTCDateTime(), nullable=True))
    op.create_table(
        "session_dependencies",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("depends_on", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["depends_on"],
            ["sessions.id"],
        ),
        sa.PrimaryKeyConstraint("session_id", "depends_on"),
    )
    with op.batch_alter_table("session_dependencies") as batch_op:
        batch_op.create_index("ix_session_dependencies_depends_on", ["depends_on"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("session_dependencies") as batch_op:
        batch_op.drop_index("ix_session_dependencies_depends_on")
    op.drop_table("session_dependencies")
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.drop_column("starts_at")
