"""Join tokens for nodes on other machines: `POST /admin/node-tokens` (admin only)."""

from __future__ import annotations

from datetime import timedelta

from quart import Blueprint, Response, jsonify

from controlplane import jointokens
from controlplane.api.app import core, read_json, require_admin
from controlplane.errors import InvalidAPIParams

bp = Blueprint("node_tokens", __name__)


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
