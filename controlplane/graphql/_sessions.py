"""compute_session and compute_session_list: sessions and their containers (kernels)."""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import QueryType
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import keypairs
from controlplane import sessions as sessions_db
from controlplane.db.models import Kernel, Project, Session, User
from controlplane.errors import InsufficientPrivilege, InvalidAPIParams
from controlplane.graphql._common import Info, context, iso, list_args, split_csv

query = QueryType()


@query.field("compute_session")
async def resolve_compute_session(_: Any, info: Info, id: uuid.UUID) -> dict[str, Any] | None:
    ctx = context(info)
    async with ctx.core.db() as db:
        session = await sessions_db.get_visible(db, ctx.requester, id)
        if session is None:
            return None
        return (await _views(db, [session]))[0]


@query.field("compute_session_list")
async def resolve_compute_session_list(
    _: Any,
    info: Info,
    limit: int,
    offset: int,
    filter: str | None = None,
    order: str | None = None,
    domain_name: str | None = None,
    group_id: str | None = None,
    access_key: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    ctx = context(info)
    args = list_args(
        limit,
        offset,
        filter,
        order,
        filter_fields=sessions_db.FILTER_COLUMNS,
        order_fields=sessions_db.ORDER_COLUMNS,
    )
    if ctx.requester.is_admin:
        owner = access_key  # None: every owner's sessions
    elif access_key in (None, ctx.requester.access_key):
        owner = ctx.requester.access_key
    else:
        raise InsufficientPrivilege("only admins may list the sessions of another keypair")
    project_id = None
    if group_id is not None:
        try:
            project_id = uuid.UUID(group_id)
        except ValueError:
            raise InvalidAPIParams(f"group_id {group_id!r} is not a UUID") from None
    async with ctx.core.db() as db:
        page, total = await sessions_db.list_page(
            db,
            access_key=owner,
            statuses=split_csv(status),
            domain_name=domain_name,
            project_id=project_id,
            conditions=args.conditions,
            orderings=args.orderings,
            limit=args.limit,
            offset=args.offset,
        )
        return {"items": await _views(db, page), "total_count": total}


async def _views(db: DBSession, found: list[Session]) -> list[dict[str, Any]]:
    projects = await keypairs.projects_by_id(db)
    users = await keypairs.users_by_id(db, {s.user_id for s in found})
    return [_session_view(s, projects.get(s.project_id), users.get(s.user_id)) for s in found]


def _session_view(session: Session, project: Project | None, user: User | None) -> dict[str, Any]:
    main = session.kernels[0] if session.kernels else None
    occupying = sessions_db.occupying(session)
    email = user.email if user is not None else None
    return {
        "id": str(session.id),
        "session_id": session.id,
        "main_kernel_id": main.id if main else None,
        "name": session.name,
        "type": session.type,
        "tag": session.tag,
        "image": session.image,
        "architecture": "x86_64",
        "registry": None,
        "cluster_template": None,
        "cluster_mode": "single-node",
        "cluster_size": 1,
        "domain_name": session.domain_name,
        "group_name": project.name if project else None,
        "group_id": session.project_id,
        "user_email": email,
        "full_name": None,
        "user_id": session.user_id,
        "access_key": session.access_key,
        "created_user_email": email,
        "created_user_id": session.user_id,
        "status": session.status,
        "status_changed": session.status_changed,
        "status_info": session.status_info,
        "status_data": session.status_data or {},
        "status_history": {h.status.lower(): iso(h.at) for h in session.history},
        "created_at": session.created_at,
        "terminated_at": session.terminated_at,
        "starts_at": None,
        "scheduled_at": next((h.at for h in session.history if h.status == "SCHEDULED"), None),
        "startup_command": session.startup_command,
        "result": session.result,
        "idle_checks": {},
        "abusing_reports": [],
        "agent_ids": sorted({k.node_id for k in session.kernels if k.node_id}),
        "resource_opts": {},
        "scaling_group": "default",
        "service_ports": [],
        "mounts": [],
        "occupying_slots": occupying,
        "occupied_slots": occupying,
        "requested_slots": session.requested_slots,
        "num_queries": 0,
        "containers": [_container_view(session, k, i) for i, k in enumerate(session.kernels)],
        "dependencies": [],
    }


def _container_view(session: Session, kernel: Kernel, idx: int) -> dict[str, Any]:
    running = kernel.status in ("PREPARING", "RUNNING")
    role = kernel.cluster_role
    return {
        "id": str(kernel.id),
        "idx": idx,
        "role": role,
        "hostname": f"{role}{idx + 1}",
        "cluster_idx": idx,
        "cluster_role": role,
        "cluster_hostname": f"{role}{idx + 1}",
        "session_id": session.id,
        "image": session.image,
        "architecture": "x86_64",
        "registry": None,
        "status": kernel.status,
        "status_changed": session.status_changed,
        "status_info": session.status_info,
        "status_data": {"exit_code": kernel.exit_code} if kernel.exit_code is not None else {},
        "created_at": kernel.created_at,
        "terminated_at": None if running else session.terminated_at,
        "agent": kernel.node_id,
        "container_id": kernel.container_id,
        "resource_opts": {},
        "occupied_slots": session.requested_slots if running else {},
        "live_stat": None,
        "last_stat": None,
        "preopen_ports": [],
    }
