"""keypair, keypairs and keypair_list: users see their own keypairs, admins everyone's."""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import ObjectType, QueryType
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import keypairs, tenancy
from controlplane import sessions as sessions_db
from controlplane.db.models import Keypair
from controlplane.errors import InsufficientPrivilege
from controlplane.graphql._common import (
    Context,
    Info,
    admin_domain,
    context,
    list_args,
    split_csv,
)
from controlplane.graphql._sessions import session_views, sessions_of

query = QueryType()
keypair_type = ObjectType("KeyPair")
RATE_LIMIT = 0  # Shipyard has no rate limits


@query.field("keypair")
async def resolve_keypair(
    _: Any,
    info: Info,
    domain_name: str | None = None,
    access_key: str | None = None,
) -> dict[str, Any] | None:
    ctx = context(info)
    if access_key in (None, ctx.requester.access_key):
        access_key = ctx.requester.access_key
    elif not ctx.requester.is_admin:
        raise InsufficientPrivilege("only admins may look at another keypair")
    async with ctx.core.db() as db:
        keypair = await keypairs.get_keypair(db, access_key)
        if keypair is None or not tenancy.can_see_owner(
            ctx.requester, keypair.user.domain_name, keypair.access_key
        ):
            return None
        return (await keypair_views(db, [keypair]))[0]


@query.field("keypairs")
async def resolve_keypairs(
    _: Any,
    info: Info,
    domain_name: str | None = None,
    email: str | None = None,
    is_active: bool | None = None,
) -> list[dict[str, Any]]:
    ctx = context(info)
    async with ctx.core.db() as db:
        owner, none_match = await _owner(ctx, db, email)
        if none_match:
            return []
        found = await tenancy.list_keypairs(
            db, user_id=owner, domain_name=_domain(ctx, domain_name), is_active=is_active
        )
        return await keypair_views(db, found)


@query.field("keypair_list")
async def resolve_keypair_list(
    _: Any,
    info: Info,
    limit: int,
    offset: int,
    filter: str | None = None,
    order: str | None = None,
    domain_name: str | None = None,
    email: str | None = None,
    is_active: bool | None = None,
) -> dict[str, Any]:
    ctx = context(info)
    args = list_args(
        limit,
        offset,
        filter,
        order,
        filter_fields=keypairs.KEYPAIR_FILTER_COLUMNS,
        order_fields=keypairs.KEYPAIR_ORDER_COLUMNS,
    )
    async with ctx.core.db() as db:
        owner, none_match = await _owner(ctx, db, email)
        if none_match:
            return {"items": [], "total_count": 0}
        page, total = await keypairs.list_keypairs_page(
            db,
            user_id=owner,
            is_active=is_active,
            domain_name=_domain(ctx, domain_name),
            conditions=args.conditions,
            orderings=args.orderings,
            limit=args.limit,
            offset=args.offset,
        )
        return {"items": await keypair_views(db, page), "total_count": total}


def _domain(ctx: Context, domain_name: str | None) -> str | None:
    return admin_domain(ctx, domain_name) if ctx.requester.is_admin else domain_name


async def _owner(ctx: Context, db: DBSession, email: str | None) -> tuple[uuid.UUID | None, bool]:
    """Whose keypairs to list (None: everyone's), and whether no user matches at all."""
    if not ctx.requester.is_admin:
        if email not in (None, ctx.requester.user.email):
            raise InsufficientPrivilege("only admins may list the keypairs of another user")
        return ctx.requester.user_id, False
    if email is None:
        return None, False
    user = await keypairs.get_user(db, email=email)
    return (user.id, False) if user is not None else (None, True)


@keypair_type.field("compute_sessions")
async def resolve_compute_sessions(
    keypair: dict[str, Any], info: Info, status: str | None = None
) -> list[dict[str, Any]]:
    # the keypair is the requester's own or the requester is an admin (the root checked);
    # this runs only when the field is selected
    async with context(info).core.db() as db:
        found = await sessions_of(db, keypair["access_key"], split_csv(status))
        return await session_views(db, found)


@keypair_type.field("secret_key")
def resolve_secret_key(keypair: dict[str, Any], info: Info) -> str:
    # the keypair is the requester's own or the requester is an admin (the root checked)
    box = context(info).core.secrets
    return box.unseal(keypair["sealed_secret_key"], bound_to=keypair["access_key"])


async def keypair_views(db: DBSession, found: list[Keypair]) -> list[dict[str, Any]]:
    projects = await tenancy.memberships(db, {kp.user_id for kp in found})
    active = await sessions_db.count_active(db, [kp.access_key for kp in found])
    return [
        {
            "id": kp.access_key,
            "user_id": kp.user.email,
            "full_name": None,
            "user": kp.user_id,
            "user_info": {"email": kp.user.email, "full_name": None},
            "projects": [p.name for p in projects[kp.user_id]],
            "access_key": kp.access_key,
            "sealed_secret_key": kp.sealed_secret_key,  # unsealed only when asked (below)
            "is_active": kp.is_active,
            "is_admin": kp.is_admin,
            "resource_policy": kp.resource_policy,
            "created_at": kp.created_at,
            "modified_at": kp.created_at,
            "last_used": None,
            "rate_limit": RATE_LIMIT,
            "num_queries": 0,
            "vfolders": [],
            "concurrency_used": active.get(kp.access_key, 0),
            # deprecated: the policy's max_concurrent_sessions, which is unlimited
            "concurrency_limit": None,
            "ssh_public_key": None,
            "domain_name": kp.user.domain_name,
        }
        for kp in found
    ]
