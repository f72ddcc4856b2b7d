"""Join tokens for nodes on other machines (admin only): create, list, revoke."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from quart import Blueprint, Response, jsonify

from controlplane import jointokens
from controlplane.api.app import core, read_json, require_admin
from controlplane.db.models import JoinToken
from controlplane.errors import InvalidAPIParams

bp = Blueprint("node_tokens", __name__)


class _Reply(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True
    )


class NodeTokenView(_Reply):
    """A join token as admins see it after it was made: never the token itself."""

    id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    node_id: str | None  # the node that joined with it: its credential from then on
    used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: JoinToken) -> NodeTokenView:
        return cls(
            id=row.id,
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            node_id=row.node_id,
            used_at=row.used_at,
            revoked_at=row.revoked_at,
        )


class NodeTokenList(_Reply):
    items: list[NodeTokenView]


def _json(model: _Reply, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, content_type="application/json")


@bp.post("/admin/node-tokens")
async def create_node_token() -> tuple[Response, int]:
    """Body (optional): {"ttl": SECONDS}. Answers {"token": ..., "expiresAt": ISO 8601}; the
    token is shown only here."""
    admin = require_admin()
    body = await read_json()
    ttl_value = body.get("ttl") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not (
        ttl_value is None
        or (isinstance(ttl_value, int | float) and not isinstance(ttl_value, bool))
    ):
        raise InvalidAPIParams('send {"ttl": SECONDS} or an empty body (24 hours)')
    ttl = jointokens.DEFAULT_TTL if ttl_value is None else timedelta(seconds=float(ttl_value))
    async with core().db() as db:
        token, expires_at = await jointokens.create(db, created_by=admin.access_key, ttl=ttl)
        await db.commit()
    return jsonify({"token": token, "expiresAt": expires_at.isoformat()}), 201


@bp.get("/admin/node-tokens")
async def list_node_tokens() -> Response:
    """Every join token, oldest first."""
    require_admin()
    async with core().db() as db:
        rows = await jointokens.list_all(db)
    return _json(NodeTokenList(items=[NodeTokenView.of(row) for row in rows]))


@bp.delete("/admin/node-tokens/<token_id>")
async def revoke_node_token(token_id: str) -> Response:
    """Revoke a join token: it admits nobody any more, the node that joined with it is
    disconnected, and its node id may be claimed again (by the machine re-joining with a new
    token)."""
    require_admin()
    the_core = core()
    async with the_core.db() as db:
        row, now = await jointokens.revoke(db, token_id)
        await db.commit()
    if now and row.node_id is not None and row.node_id in the_core.hub.connected():
        the_core.hub.get(row.node_id).close()
    return _json(NodeTokenView.of(row))
