"""Join tokens for nodes on other machines: `POST /admin/node-tokens` (admin only)."""

from __future__ import annotations

from quart import Blueprint

from controlplane import jointokens
from controlplane.api._context import core, require_admin
from controlplane.api._models import CreateNodeToken, NodeToken
from controlplane.api._typed import body, returns

bp = Blueprint("node_tokens", __name__)


@bp.post("/admin/node-tokens")
@returns(NodeToken, 201)
@body(CreateNodeToken)
async def create_node_token(data: CreateNodeToken) -> NodeToken:
    """A join token for one node (an empty body: valid for 24 hours); shown only here."""
    admin = require_admin()
    async with core().db() as db:
        token, expires_at = await jointokens.create(
            db, created_by=admin.access_key, ttl=data.lifetime()
        )
        await db.commit()
    return NodeToken(token=token, expires_at=expires_at.isoformat())
