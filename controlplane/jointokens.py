"""Join tokens and node identities: how a node on another machine gets in (k3s-style), and
why no credential can pose as a node it did not create.

An admin creates a token (`POST /admin/node-tokens`); it is shown once and only its SHA-256 is
kept. A node dials in with it as its bearer token. Unused, it is accepted until it expires;
the first node that registers with it binds it, and from then on it is that node's own
credential: the node keeps reconnecting with it for as long as it lives, and no other node id
may use it. An admin can list tokens and revoke one; revoking drops its node and frees the node
id for the next credential that claims it (a machine re-joining with a new token).

Every node id is bound to the credential that first registered it (`NodeIdentity`): the shared
node token of the control plane's own machine (`cluster`) or one join token. A later register
with another credential is refused before the node is attached, so an impostor never gets a
frame and the real node's sessions do not notice.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import JoinToken, NodeIdentity
from controlplane.db.types import utcnow
from controlplane.errors import AuthFailed, InvalidAPIParams, ObjectNotFound

PREFIX = "syj_"
CLUSTER = "cluster"  # the credential of nodes that dial in with the shared node token
DEFAULT_TTL = timedelta(hours=24)
MIN_TTL, MAX_TTL = timedelta(minutes=1), timedelta(days=365)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_one(token: str) -> bool:
    return token.startswith(PREFIX)


async def create(
    db: DBSession, *, created_by: str, ttl: timedelta = DEFAULT_TTL
) -> tuple[str, datetime]:
    """A new token and when it expires unless used."""
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidAPIParams(
            f"ttl must be between {MIN_TTL.total_seconds():.0f} and"
            f" {MAX_TTL.total_seconds():.0f} seconds, not {ttl.total_seconds():.0f}"
        )
    token = PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + ttl
    token_hash = _hash(token)
    db.add(
        JoinToken(
            token_hash=token_hash, id=token_hash[:12], created_by=created_by, expires_at=expires_at
        )
    )
    await db.flush()
    return token, expires_at


async def admit(db: DBSession, token: str) -> JoinToken:
    """The token's record if a node may dial in with it; AuthFailed saying why not."""
    row = await db.get(JoinToken, _hash(token))
    if row is None:
        raise AuthFailed("unknown node token")
    if row.revoked_at is not None:
        raise AuthFailed(f"this join token was revoked at {row.revoked_at.isoformat()}")
    if row.node_id is None and row.expires_at <= utcnow():
        raise AuthFailed(
            f"this join token expired at {row.expires_at.isoformat()}; create a new one with"
            " `shipyard node token create`"
        )
    return row


def credential_of(token: JoinToken | None) -> str:
    """How a node identity names the credential: `cluster` or `join:<token id>`."""
    return CLUSTER if token is None else f"join:{token.id}"


async def claim(db: DBSession, node_id: str, token: JoinToken | None) -> None:
    """Let the node that sent this register be `node_id`, or raise AuthFailed: the id is bound
    to another credential, or this join token to another node. `token` is None for the shared
    node token. The caller commits."""
    credential = credential_of(token)
    bound = await db.get(NodeIdentity, node_id)
    if bound is None:
        try:
            async with db.begin_nested():  # of two first claims at once, one wins
                db.add(NodeIdentity(node_id=node_id, credential=credential))
        except IntegrityError:
            bound = await db.get(NodeIdentity, node_id, populate_existing=True)
    if bound is not None and bound.credential != credential:
        raise AuthFailed(f"node id {node_id} belongs to another node's credential")
    if token is None:
        return
    if token.node_id is None:
        claimed = await db.execute(
            update(JoinToken)
            .where(JoinToken.token_hash == token.token_hash, JoinToken.node_id.is_(None))
            .values(node_id=node_id, used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) == 1:
            return
        await db.refresh(token)
    if token.node_id != node_id:
        raise AuthFailed(f"this join token belongs to node {token.node_id}, not {node_id}")


async def list_all(db: DBSession) -> list[JoinToken]:
    return list(await db.scalars(select(JoinToken).order_by(JoinToken.created_at)))


async def revoke(db: DBSession, token_id: str) -> tuple[JoinToken, bool]:
    """Revoke a token: it admits nobody any more, and the node id it bound is free again.
    Also says whether it was revoked now (not before): then the caller disconnects the node
    that joined with it. The caller commits."""
    row = await db.scalar(select(JoinToken).where(JoinToken.id == token_id))
    if row is None:
        raise ObjectNotFound(f"no join token {token_id}")
    if row.revoked_at is not None:
        return row, False
    row.revoked_at = utcnow()
    await db.execute(delete(NodeIdentity).where(NodeIdentity.credential == credential_of(row)))
    await db.flush()
    return row, True
