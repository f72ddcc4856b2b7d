"""user, user_from_uuid, users and user_list: users see themselves, admins the users of the
domains they manage (controlplane/tenancy.py)."""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import QueryType
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import keypairs, tenancy, users
from controlplane.db.models import User
from controlplane.errors import InsufficientPrivilege, InvalidAPIParams
from controlplane.graphql._common import (
    Context,
    Info,
    admin_domain,
    admin_only,
    context,
    list_args,
)

query = QueryType()


@query.field("user")
async def resolve_user(
    _: Any, info: Info, domain_name: str | None = None, email: str | None = None
) -> dict[str, Any] | None:
    ctx = context(info)
    own = email in (None, ctx.requester.user.email)
    if not own and not ctx.requester.is_admin:
        raise InsufficientPrivilege("only admins may look at another user")
    async with ctx.core.db() as db:
        user = await keypairs.get_user(
            db, email=email, user_id=ctx.requester.user_id if own else None
        )
        if user is None or not _visible(ctx, user):
            return None
        return (await user_views(db, [user]))[0]


@query.field("user_from_uuid")
async def resolve_user_from_uuid(
    _: Any, info: Info, domain_name: str | None = None, user_id: str | None = None
) -> dict[str, Any] | None:
    ctx = context(info)
    if user_id is None:
        wanted = ctx.requester.user_id
    else:
        try:
            wanted = uuid.UUID(user_id)
        except ValueError:
            raise InvalidAPIParams(f"user_id {user_id!r} is not a UUID") from None
    if wanted != ctx.requester.user_id and not ctx.requester.is_admin:
        raise InsufficientPrivilege("only admins may look at another user")
    async with ctx.core.db() as db:
        user = await keypairs.get_user(db, user_id=wanted)
        if user is None or not _visible(ctx, user):
            return None
        return (await user_views(db, [user]))[0]


@query.field("users")
async def resolve_users(
    _: Any,
    info: Info,
    domain_name: str | None = None,
    group_id: uuid.UUID | None = None,
    is_active: bool | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    ctx = admin_only(info)
    async with ctx.core.db() as db:
        found = await tenancy.list_users(
            db,
            domain_name=admin_domain(ctx, domain_name),
            project_id=group_id,
            statuses=_statuses(is_active, status),
        )
        return await user_views(db, found)


@query.field("user_list")
async def resolve_user_list(
    _: Any,
    info: Info,
    limit: int,
    offset: int,
    filter: str | None = None,
    order: str | None = None,
    domain_name: str | None = None,
    group_id: uuid.UUID | None = None,
    is_active: bool | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    ctx = admin_only(info)
    args = list_args(
        limit,
        offset,
        filter,
        order,
        filter_fields=keypairs.USER_FILTER_COLUMNS,
        order_fields=keypairs.USER_ORDER_COLUMNS,
    )
    async with ctx.core.db() as db:
        page, total = await keypairs.list_users_page(
            db,
            domain_name=admin_domain(ctx, domain_name),
            project_id=group_id,
            statuses=_statuses(is_active, status),
            conditions=args.conditions,
            orderings=args.orderings,
            limit=args.limit,
            offset=args.offset,
        )
        return {"items": await user_views(db, page), "total_count": total}


def _visible(ctx: Context, user: User) -> bool:
    if user.id == ctx.requester.user_id:
        return True
    return tenancy.managed_domain(ctx.requester) in (None, user.domain_name)


def _statuses(is_active: bool | None, status: str | None) -> list[str] | None:
    """The user statuses these filters allow; None: any."""
    allowed = set(users.STATUSES)
    if is_active is not None:
        allowed &= {"active"} if is_active else allowed - {"active"}
    if status is not None:
        allowed &= {status.lower()}
    return None if allowed == set(users.STATUSES) else sorted(allowed)


async def user_views(db: DBSession, found: list[User]) -> list[dict[str, Any]]:
    main_keys = await keypairs.main_access_keys(db, [u.id for u in found])
    projects = await tenancy.memberships(db, [u.id for u in found])
    views = []
    for u in found:
        groups = projects[u.id]
        views.append(
            {
                "id": str(u.id),
                "uuid": u.id,
                "username": u.email,
                "email": u.email,
                "need_password_change": False,
                "full_name": None,
                "description": None,
                "is_active": u.status == "active",
                "status": u.status,
                "status_info": None,
                "created_at": u.created_at,
                "modified_at": u.created_at,
                "domain_name": u.domain_name,
                "role": u.role,
                "resource_policy": u.resource_policy,
                "allowed_client_ip": None,
                "totp_activated": False,
                "totp_activated_at": None,
                "sudo_session_enabled": False,
                "main_access_key": main_keys.get(u.id),
                "groups": [{"id": p.id, "name": p.name} for p in groups],
            }
        )
    return views
