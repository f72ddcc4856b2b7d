"""SSH key pairs of keypairs

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UTCDateTime


revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ssh_keypairs",
        sa.Column("access_key", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("sealed_private_key", sa.Text(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["access_key"], ["keypairs.access_key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("access_key"),
    )


def downgrade() -> None:
    op.drop_table("ssh_keypairs")
