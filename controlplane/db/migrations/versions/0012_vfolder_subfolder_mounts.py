"""Mounts of a folder inside a virtual folder

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 04:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing mounts are of whole folders: ""
    with op.batch_alter_table("vfolder_mounts") as batch:
        batch.add_column(
            sa.Column("subpath", sa.String(length=4096), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("vfolder_mounts") as batch:
        batch.drop_column("subpath")
