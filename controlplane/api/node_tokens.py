"""Join tokens for nodes on other machines (docs/installer.md): make, list, revoke."""

from __future__ import annotations

from quart import Blueprint

from controlplane import jointokens, nodewatch
from controlplane.api._context import core, require_admin
from controlplane.api._models import CreateNodeToken, NodeToken, NodeTokenList, NodeTokenView
from controlplane.api._typed import body, returns
from controlplane.db.models import JoinToken

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


@bp.get("/admin/node-tokens")
@returns(NodeTokenList)
async def list_node_tokens() -> NodeTokenList:
    """Every join token, oldest first (admin); never the token itself."""
    require_admin()
    async with core().db() as db:
        rows = await jointokens.list_all(db)
    return NodeTokenList(items=[NodeTokenView.of(row) for row in rows])


@bp.delete("/admin/node-tokens/<token_id>")
@returns(NodeTokenView)
async def revoke_node_token(token_id: str) -> NodeTokenView:
    """Revoke a join token: it admits nobody any more, the node that joined with it is
    disconnected, and its node id may be claimed again (by the machine re-joining with a new
    token)."""
    require_admin()
    return NodeTokenView.of(await revoke(token_id))


async def revoke(token_id: str) -> JoinToken:
    """Revoke the token and drop the node that joined with it (the REST API and the web UI)."""
    the_core = core()
    async with the_core.db() as db:
        row, now = await jointokens.revoke(db, token_id)
        await db.commit()
    if now and row.node_id is not None:
        reason = f"node {row.node_id} was terminated: its join token {row.id} was revoked"
        await nodewatch.end_node(the_core, row.node_id, "TERMINATED", reason)
    return row
