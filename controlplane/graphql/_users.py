"""keypair, keypair_list, user and user_list."""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import QueryType
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import keypairs
from controlplane import sessions as sessions_db
from controlplane.db.models import Keypair, Project, User
from controlplane.errors import InsufficientPrivilege
from controlplane.graphql._common import Info, admin_only, context, list_args

query = QueryType()
RESOURCE_POLICY = "default"  # Shipyard has no keypair resource policies yet
RATE_LIMIT = 0  # nor rate limits


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
        if keypair is None:
            return None
        return (await _keypair_views(db, [keypair]))[0]


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
        user_id: uuid.UUID | None = None
        if not ctx.requester.is_admin:
            if email not in (None, ctx.requester.user.email):
                raise InsufficientPrivilege("only admins may list the keypairs of another user")
            user_id = ctx.requester.user_id
        elif email is not None:
            user = await keypairs.get_user(db, email=email)
            if user is None:
                return {"items": [], "total_count": 0}
            user_id = user.id
        page, total = await keypairs.list_keypairs_page(
            db,
            user_id=user_id,
            is_active=is_active,
            domain_name=domain_name,
            conditions=args.conditions,
            orderings=args.orderings,
            limit=args.limit,
            offset=args.offset,
        )
        return {"items": await _keypair_views(db, page), "total_count": total}


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
        project = await keypairs.default_project_id(db)
        # every Shipyard user is active and a member of the default project
        if (status is not None and status.lower() != "active") or group_id not in (
            None,
            project.id,
        ):
            return {"items": [], "total_count": 0}
        page, total = await keypairs.list_users_page(
            db,
            domain_name=domain_name,
            conditions=args.conditions,
            orderings=args.orderings,
            limit=args.limit,
            offset=args.offset,
        )
        return {"items": await _user_views(db, page), "total_count": total}


async def _keypair_views(db: DBSession, found: list[Keypair]) -> list[dict[str, Any]]:
    project = await keypairs.default_project_id(db)
    active = await sessions_db.count_active(db, [kp.access_key for kp in found])
    return [
        {
            "id": kp.access_key,
            "user_id": kp.user.email,
            "user": kp.user_id,
            "user_info": {"email": kp.user.email, "full_name": None},
            "projects": [project.name],
            "access_key": kp.access_key,
            "secret_key": kp.secret_key,
            "is_active": kp.is_active,
            "is_admin": kp.is_admin,
            "resource_policy": RESOURCE_POLICY,
            "created_at": kp.created_at,
            "modified_at": kp.created_at,
            "last_used": None,
            "rate_limit": RATE_LIMIT,
            "num_queries": 0,
            "concurrency_used": active.get(kp.access_key, 0),
            "ssh_public_key": None,
            "domain_name": kp.user.domain_name,
        }
        for kp in found
    ]


async def _user_views(db: DBSession, found: list[User]) -> list[dict[str, Any]]:
    project: Project = await keypairs.default_project_id(db)
    main_keys = await keypairs.main_access_keys(db, [u.id for u in found])
    return [
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
            "resource_policy": RESOURCE_POLICY,
            "allowed_client_ip": None,
            "totp_activated": False,
            "sudo_session_enabled": False,
            "main_access_key": main_keys.get(u.id),
            "groups": [{"id": project.id, "name": project.name}],
        }
        for u in found
    ]
