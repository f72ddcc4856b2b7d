"""user, user_from_uuid, users and user_list: users see themselves, admins everyone.

Every Shipyard user is active and a member of the default project (controlplane/tenancy.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import QueryType
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import keypairs, tenancy
from controlplane.db.models import User
from controlplane.errors import InsufficientPrivilege, InvalidAPIParams
from controlplane.graphql._common import Info, admin_only, context, list_args

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
        if user is None:
            return None
        return (await _user_views(db, [user]))[0]


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
        if user is None:
            return None
        return (await _user_views(db, [user]))[0]


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
        any_match, domain = await _scope(db, domain_name, group_id, is_active, status)
        if not any_match:
            return []
        return await _user_views(db, await tenancy.list_users(db, domain_name=domain))


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
        any_match, domain = await _scope(db, domain_name, group_id, is_active, status)
        if not any_match:
            return {"items": [], "total_count": 0}
        page, total = await keypairs.list_users_page(
            db,
            domain_name=domain,
            conditions=args.conditions,
            orderings=args.orderings,
            limit=args.limit,
            offset=args.offset,
        )
        return {"items": await _user_views(db, page), "total_count": total}


async def _scope(
    db: DBSession,
    domain_name: str | None,
    group_id: uuid.UUID | None,
    is_active: bool | None,
    status: str | None,
) -> tuple[bool, str | None]:
    """Whether any user can match these filters, and the domain they are in (None: any)."""
    if is_active is False or (status is not None and status.lower() != "active"):
        return False, None  # every user is active
    if group_id is None:
        return True, domain_name
    projects = await tenancy.list_projects(db, project_id=group_id)
    members = tenancy.members_domain(projects[0]) if projects else None
    if members is None or domain_name not in (None, members):
        return False, None
    return True, members


async def _user_views(db: DBSession, found: list[User]) -> list[dict[str, Any]]:
    main_keys = await keypairs.main_access_keys(db, [u.id for u in found])
    projects = await tenancy.list_projects(db)
    views = []
    for u in found:
        groups = [p for p in projects if tenancy.is_member(u, p)]
        views.append(
            {
                "id": str(u.id),
                "uuid": u.id,
                "username": u.email,
                "email": u.email,
                "need_password_change": False,
                "full_name": None,
                "description": None,
                "is_active": True,
                "status": "active",
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
