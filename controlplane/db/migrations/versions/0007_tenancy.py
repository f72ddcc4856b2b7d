"""tenancy: user status, project members, resource presets, audit log

Every existing user becomes a member of its domain's `default` project, where its sessions
already are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 01:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UTCDateTime


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="active")
        )
    members = op.create_table(
        "project_members",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id"),
    )
    op.create_table(
        "resource_presets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("resource_slots", sa.JSON(), nullable=False),
        sa.Column("shared_memory", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=True),
        sa.Column("domain_name", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=300), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    # every user was implicitly in its domain's default project: make that explicit
    users = sa.table("users", sa.column("id", sa.Uuid()), sa.column("domain_name", sa.String))
    projects = sa.table(
        "projects",
        sa.column("id", sa.Uuid()),
        sa.column("name", sa.String),
        sa.column("domain_name", sa.String),
    )
    rows = (
        op.get_bind()
        .execute(
            sa.select(projects.c.id, users.c.id).join(
                projects,
                sa.and_(
                    projects.c.domain_name == users.c.domain_name, projects.c.name == "default"
                ),
            )
        )
        .all()
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        members,
        [
            {"project_id": project_id, "user_id": user_id, "added_at": now}
            for project_id, user_id in rows
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("resource_presets")
    op.drop_table("project_members")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("status")
