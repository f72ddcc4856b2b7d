"""Join tokens: how a node on another machine gets in (k3s-style).

An admin creates one (`POST /admin/node-tokens`); the token is shown once and only its SHA-256
is kept. A node dials in with it as its bearer token. Unused, it is accepted until it expires;
the first node that registers with it binds it, and from then on it is that node's own
credential: the node keeps reconnecting with it for as long as it lives, and no other node id
may use it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import JoinToken
from controlplane.db.types import utcnow
from controlplane.errors import AuthFailed, InvalidAPIParams

PREFIX = "syj_"
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
    db.add(JoinToken(token_hash=_hash(token), created_by=created_by, expires_at=expires_at))
    await db.flush()
    return token, expires_at


async def admit(db: DBSession, token: str) -> JoinToken:
    """The token's record if a node may dial in with it; AuthFailed saying why not."""
    row = await db.get(JoinToken, _hash(token))
    if row is None:
        raise AuthFailed("unknown node token")
    if row.node_id is None and row.expires_at <= utcnow():
        raise AuthFailed(
            f"this join token expired at {row.expires_at.isoformat()}; create a new one with"
            " `shipyard node token create`"
        )
    return row


async def bind(db: DBSession, token: str, node_id: str) -> None:
    """Record that `node_id` joined with `token` (the first time), or check it is that node."""
    row = await admit(db, token)
    if row.node_id is None:
        # compare-and-set: of two nodes joining with one token at once, one wins
        claimed = await db.execute(
            update(JoinToken)
            .where(JoinToken.token_hash == row.token_hash, JoinToken.node_id.is_(None))
            .values(node_id=node_id, used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) == 1:
            return
        await db.refresh(row)
    if row.node_id != node_id:
        raise AuthFailed(f"this join token belongs to node {row.node_id}, not {node_id}")
