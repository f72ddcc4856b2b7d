"""image labels and the image registry

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 22:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UTCDateTime


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch_op:
        batch_op.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="{}"))
    registry = op.create_table(
        "image_registry",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("changed_by", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    # what was usable before the registry existed stays usable
    names = op.get_bind().execute(sa.text("SELECT DISTINCT name FROM images")).scalars().all()
    now = datetime.now(UTC)
    op.bulk_insert(
        registry,
        [
            {
                "name": name,
                "registered": True,
                "source": "upgrade",
                "changed_at": now,
                "changed_by": None,
            }
            for name in names
        ],
    )


def downgrade() -> None:
    op.drop_table("image_registry")
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("labels")
