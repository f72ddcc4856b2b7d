"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 05:20:38.423734
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UTCDateTime


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "domains",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "image_aliases",
        sa.Column("alias", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("alias"),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("architecture", sa.String(length=16), nullable=False),
        sa.Column("network_mode", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("scaling_group", sa.String(length=64), nullable=False),
        sa.Column("available_slots", sa.JSON(), nullable=False),
        sa.Column("accelerators", sa.JSON(), nullable=False),
        sa.Column("cpu_cur_pct", sa.Double(), nullable=False),
        sa.Column("mem_cur_bytes", sa.Integer(), nullable=False),
        sa.Column("first_contact", UTCDateTime(), nullable=False),
        sa.Column("last_contact", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "images",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("architecture", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
        ),
        sa.PrimaryKeyConstraint("node_id", "name"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_name"],
            ["domains.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.create_index("ix_projects_domain_name", ["domain_name", "name"], unique=True)

    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_name"],
            ["domains.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "keypairs",
        sa.Column("access_key", sa.String(length=32), nullable=False),
        sa.Column("secret_key", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("access_key"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("access_key", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("image", sa.String(length=256), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_info", sa.Text(), nullable=False),
        sa.Column("status_data", sa.JSON(), nullable=False),
        sa.Column("status_changed", UTCDateTime(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("requested_slots", sa.JSON(), nullable=False),
        sa.Column("environ", sa.JSON(), nullable=False),
        sa.Column("startup_command", sa.Text(), nullable=True),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("terminated_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["access_key"],
            ["keypairs.access_key"],
        ),
        sa.ForeignKeyConstraint(
            ["domain_name"],
            ["domains.name"],
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sessions_access_key_name", ["access_key", "name"], unique=False)
        batch_op.create_index("ix_sessions_status", ["status"], unique=False)

    op.create_table(
        "kernels",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("cluster_role", sa.String(length=16), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("container_id", sa.String(length=80), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("logs", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("kernels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kernels_session_id"), ["session_id"], unique=False)

    op.create_table(
        "session_status_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("session_status_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_session_status_history_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("session_status_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_status_history_session_id"))

    op.drop_table("session_status_history")
    with op.batch_alter_table("kernels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kernels_session_id"))

    op.drop_table("kernels")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_status")
        batch_op.drop_index("ix_sessions_access_key_name")

    op.drop_table("sessions")
    op.drop_table("keypairs")
    op.drop_table("users")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_index("ix_projects_domain_name")

    op.drop_table("projects")
    op.drop_table("images")
    op.drop_table("nodes")
    op.drop_table("image_aliases")
    op.drop_table("domains")
