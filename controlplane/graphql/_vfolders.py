"""vfolder_list: the folders the requester reaches (docs/backendai-api.md §6.3), paged,
filtered and ordered as every `*_list` query is; `group_id` keeps one project's folders."""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import QueryType

from controlplane import listing, vfolders
from controlplane.graphql._common import Info, context, list_args

query = QueryType()
FIELDS = ("name", "host", "permission", "ownership_type", "status", "usage_mode", "created_at")


def _view(access: vfolders.Access) -> dict[str, Any]:
    folder = access.folder
    return {
        "id": folder.id.hex,
        "host": folder.host,
        "name": folder.name,
        "user": folder.user_id,
        "group": folder.project_id,
        "creator": folder.creator,
        "permission": access.permission,
        "usage_mode": folder.usage_mode,
        "ownership_type": folder.ownership_type,
        "created_at": folder.created_at,
        "status": folder.status,
        "cloneable": folder.cloneable,
        "max_size": folder.max_size // 2**20 if folder.max_size else 0,
    }


@query.field("vfolder_list")
async def resolve_vfolder_list(
    _: Any,
    info: Info,
    limit: int,
    offset: int,
    filter: str | None = None,
    order: str | None = None,
    group_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    ctx = context(info)
    args = list_args(limit, offset, filter, order, filter_fields=FIELDS, order_fields=FIELDS)
    async with ctx.core.db() as db:
        found = await vfolders.accessible(db, ctx.requester.user)
    views = [_view(a) for a in found if group_id is None or a.folder.project_id == group_id]
    views = [v for v in views if listing.matches(args.conditions, v)]
    views = listing.sort_records(views, args.orderings)
    return {"items": views[args.offset : args.offset + args.limit], "total_count": len(views)}
