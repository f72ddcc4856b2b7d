"""resource policies (keypair, user, project) and scaling groups bound to domains and projects

Every existing keypair, user and project gets the `default` policy, which limits nothing; every
existing session and node is in the `default` scaling group, which every existing domain may use.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 01:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UTCDateTime


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    policies = op.create_table(
        "resource_policies",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("default_for_unspecified", sa.String(length=16), nullable=False),
        sa.Column("total_resource_slots", sa.JSON(), nullable=False),
        sa.Column("max_concurrent_sessions", sa.Integer(), nullable=False),
        sa.Column("max_session_lifetime", sa.Integer(), nullable=False),
        sa.Column("idle_timeout", sa.Integer(), nullable=False),
        sa.Column("max_containers_per_session", sa.Integer(), nullable=False),
        sa.Column("max_vfolder_count", sa.Integer(), nullable=False),
        sa.Column("max_vfolder_size", sa.BigInteger(), nullable=False),
        sa.Column("allowed_vfolder_hosts", sa.JSON(), nullable=False),
        sa.Column("allowed_scaling_groups", sa.JSON(), nullable=True),
        sa.Column("allowed_images", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        policies,
        [
            {
                "name": "default",
                "created_at": now,
                "default_for_unspecified": "UNLIMITED",
                "total_resource_slots": {},
                "max_concurrent_sessions": 0,
                "max_session_lifetime": 0,
                "idle_timeout": 0,
                "max_containers_per_session": 1,
                "max_vfolder_count": 0,
                "max_vfolder_size": 0,
                "allowed_vfolder_hosts": {},
                "allowed_scaling_groups": None,
                "allowed_images": None,
            }
        ],
    )
    # no foreign key: SQLite cannot add one to a table others reference without rebuilding it;
    # controlplane/policies.py refuses to delete a policy in use
    for table in ("keypairs", "users", "projects"):
        op.add_column(
            table,
            sa.Column(
                "resource_policy", sa.String(length=64), nullable=False, server_default="default"
            ),
        )

    groups = op.create_table(
        "scaling_groups",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("scheduler", sa.String(length=16), nullable=False),
        sa.Column("scheduler_opts", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "scaling_groups_for_domains",
        sa.Column("scaling_group", sa.String(length=64), nullable=False),
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["scaling_group"], ["scaling_groups.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["domain_name"], ["domains.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scaling_group", "domain_name"),
    )
    op.create_table(
        "scaling_groups_for_projects",
        sa.Column("scaling_group", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["scaling_group"], ["scaling_groups.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scaling_group", "project_id"),
    )
    op.bulk_insert(
        groups,
        [
            {
                "name": "default",
                "description": "",
                "is_active": True,
                "is_public": True,
                "scheduler": "fifo",
                "scheduler_opts": {},
                "created_at": now,
            }
        ],
    )
    op.execute(
        "INSERT INTO scaling_groups_for_domains (scaling_group, domain_name)"
        " SELECT 'default', name FROM domains"
    )
    op.add_column(
        "sessions",
        sa.Column("scaling_group", sa.String(length=64), nullable=False, server_default="default"),
    )
    op.create_index("ix_sessions_scaling_group_status", "sessions", ["scaling_group", "status"])


def downgrade() -> None:
    op.drop_index("ix_sessions_scaling_group_status", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("scaling_group")
    op.drop_table("scaling_groups_for_projects")
    op.drop_table("scaling_groups_for_domains")
    op.drop_table("scaling_groups")
    for table in ("keypairs", "users", "projects"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("resource_policy")
    op.drop_table("resource_policies")
