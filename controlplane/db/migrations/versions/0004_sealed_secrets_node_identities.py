"""sealed secret keys, node identities, revocable join tokens

Secret keys move from clear text to `sealed_secret_key`, sealed with the control plane's
secrets key. That key is not in the database: controlplane.db.engine.migrate hands it over as
the `secret_box` attribute, and this revision refuses to run without it when there are
keypairs to carry over.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 21:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UTCDateTime
from controlplane.secretbox import SecretBox


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

keypairs = sa.table(
    "keypairs",
    sa.column("access_key", sa.String),
    sa.column("secret_key", sa.String),
    sa.column("sealed_secret_key", sa.String),
)


def _box() -> SecretBox:
    config = op.get_context().config
    box = config.attributes.get("secret_box") if config is not None else None
    if box is None:
        raise RuntimeError("migration 0004 needs the secrets key (controlplane.db.engine.migrate)")
    assert isinstance(box, SecretBox)
    return box


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("join_tokens") as batch:
        batch.add_column(sa.Column("id", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("revoked_at", UTCDateTime(), nullable=True))
    conn.execute(sa.text("UPDATE join_tokens SET id = substr(token_hash, 1, 12)"))
    with op.batch_alter_table("join_tokens") as batch:
        batch.alter_column("id", existing_type=sa.String(length=16), nullable=False)
        batch.create_unique_constraint("uq_join_tokens_id", ["id"])

    op.create_table(
        "node_identities",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("credential", sa.String(length=32), nullable=False),
        sa.Column("bound_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )
    # nodes known so far keep the credential they joined with
    conn.execute(
        sa.text(
            "INSERT INTO node_identities (node_id, credential, bound_at)"
            " SELECT node_id, 'join:' || id, used_at FROM join_tokens WHERE node_id IS NOT NULL"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO node_identities (node_id, credential, bound_at)"
            " SELECT id, 'cluster', first_contact FROM nodes"
            " WHERE id NOT IN (SELECT node_id FROM node_identities)"
        )
    )

    with op.batch_alter_table("keypairs") as batch:
        batch.add_column(sa.Column("sealed_secret_key", sa.String(length=128), nullable=True))
    rows = conn.execute(sa.select(keypairs.c.access_key, keypairs.c.secret_key)).all()
    if rows:
        box = _box()
        for access_key, secret_key in rows:
            conn.execute(
                keypairs.update()
                .where(keypairs.c.access_key == access_key)
                .values(sealed_secret_key=box.seal(secret_key, bound_to=access_key))
            )
    with op.batch_alter_table("keypairs") as batch:
        batch.alter_column("sealed_secret_key", existing_type=sa.String(length=128), nullable=False)
        batch.drop_column("secret_key")


def downgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("keypairs") as batch:
        batch.add_column(sa.Column("secret_key", sa.String(length=64), nullable=True))
    rows = conn.execute(sa.select(keypairs.c.access_key, keypairs.c.sealed_secret_key)).all()
    if rows:
        box = _box()
        for access_key, sealed in rows:
            conn.execute(
                keypairs.update()
                .where(keypairs.c.access_key == access_key)
                .values(secret_key=box.unseal(sealed, bound_to=access_key))
            )
    with op.batch_alter_table("keypairs") as batch:
        batch.alter_column("secret_key", existing_type=sa.String(length=64), nullable=False)
        batch.drop_column("sealed_secret_key")
    op.drop_table("node_identities")
    with op.batch_alter_table("join_tokens") as batch:
        batch.drop_constraint("uq_join_tokens_id", type_="unique")
        batch.drop_column("revoked_at")
        batch.drop_column("id")
