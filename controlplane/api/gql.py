"""POST /admin/gql: Backend.AI's GraphQL endpoint. Always 200; failures are in `errors`
(docs/backendai-api.md §5.3, §7)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from controlplane import graphql
from controlplane.api.app import core, read_json, requester

bp = Blueprint("gql", __name__)


@bp.post("/admin/gql")
async def gql() -> dict[str, Any]:
    return await graphql.execute(core(), requester(), await read_json())
