"""virtual folders: folders, shares, invitations, session mounts

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UTCDateTime


revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vfolders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("ownership_type", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("creator", sa.String(length=256), nullable=False),
        sa.Column("permission", sa.String(length=4), nullable=False),
        sa.Column("usage_mode", sa.String(length=16), nullable=False),
        sa.Column("max_size", sa.BigInteger(), nullable=True),
        sa.Column("cloneable", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_vfolders_user_id", "vfolders", ["user_id"])
    op.create_index("ix_vfolders_project_id", "vfolders", ["project_id"])
    op.create_table(
        "vfolder_shares",
        sa.Column("vfolder_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("permission", sa.String(length=4), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["vfolder_id"], ["vfolders.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("vfolder_id", "user_id"),
    )
    op.create_table(
        "vfolder_invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("vfolder_id", sa.Uuid(), nullable=False),
        sa.Column("inviter_id", sa.Uuid(), nullable=False),
        sa.Column("invitee_id", sa.Uuid(), nullable=False),
        sa.Column("permission", sa.String(length=4), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("modified_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["vfolder_id"], ["vfolders.id"]),
        sa.ForeignKeyConstraint(["inviter_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["invitee_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_vfolder_invitations_vfolder_id", "vfolder_invitations", ["vfolder_id"])
    op.create_index("ix_vfolder_invitations_invitee_id", "vfolder_invitations", ["invitee_id"])
    op.create_table(
        "vfolder_mounts",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("vfolder_id", sa.Uuid(), nullable=False),
        sa.Column("path", sa.String(length=256), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.ForeignKeyConstraint(["vfolder_id"], ["vfolders.id"]),
        sa.PrimaryKeyConstraint("session_id", "vfolder_id"),
    )
    op.create_index("ix_vfolder_mounts_vfolder_id", "vfolder_mounts", ["vfolder_id"])


def downgrade() -> None:
    op.drop_table("vfolder_mounts")
    op.drop_table("vfolder_invitations")
    op.drop_table("vfolder_shares")
    op.drop_table("vfolders")
