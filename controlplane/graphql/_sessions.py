"""compute_session and compute_session_list: sessions and their containers (kernels), also
reached through KeyPair.compute_sessions and Agent.compute_containers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ariadne import QueryType
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import apps, keypairs, pipelines
from controlplane import sessions as sessions_db
from controlplane.db.models import DEAD_STATUSES, Kernel, Project, Session, User
from controlplane.errors import InsufficientPrivilege, InvalidAPIParams
from controlplane.graphql._common import Info, admin_domain, context, iso, list_args, split_csv
from controlplane.graphql._images import split_reference

query = QueryType()


@query.field("compute_session")
async def resolve_compute_session(_: Any, info: Info, id: uuid.UUID) -> dict[str, Any] | None:
    ctx = context(info)
    async with ctx.core.db() as db:
        session = await sessions_db.get_visible(db, ctx.requester, id)
        if session is None:
            return None
        return (await session_views(db, [session]))[0]


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
        owner = access_key  # None: every owner's sessions (of the domains the admin manages)
        domain_name = admin_domain(ctx, domain_name)
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
        return {"items": await session_views(db, page), "total_count": total}


async def session_views(db: DBSession, found: list[Session]) -> list[dict[str, Any]]:
    projects = await keypairs.projects_by_id(db)
    users = await keypairs.users_by_id(db, {s.user_id for s in found})
    archs = await sessions_db.architectures(db, found)
    ports = await apps.of_sessions(db, found)
    deps = await pipelines.dependencies_of(db, [s.id for s in found])
    views = []
    for s in found:
        view = _session_view(s, projects.get(s.project_id), users.get(s.user_id), archs[s.id])
        view["service_ports"] = [app.record() for app in ports[s.id]]
        view["dependencies"] = [_dependency_view(d) for d in deps.get(s.id, [])]
        views.append(view)
    return views


def _dependency_view(session: Session) -> dict[str, Any]:
    return {
        "id": str(session.id),
        "session_id": session.id,
        "name": session.name,
        "session_name": session.name,
        "status": session.status,
        "status_info": session.status_info,
        "result": session.result,
        "dependencies": [],
    }


async def sessions_of(db: DBSession, access_key: str, statuses: list[str] | None) -> list[Session]:
    """A keypair's sessions, newest first (KeyPair.compute_sessions)."""
    clauses = [Session.access_key == access_key]
    if statuses is not None:
        clauses.append(Session.status.in_(statuses))
    found = await db.scalars(
        select(Session).where(*clauses).order_by(Session.created_at.desc(), Session.id)
    )
    return list(found)


async def containers_on(
    db: DBSession, node_id: str, statuses: list[str] | None
) -> list[dict[str, Any]]:
    """The containers a node has had, newest first (Agent.compute_containers)."""
    on_node = select(Kernel.session_id).where(Kernel.node_id == node_id)
    found = list(await db.scalars(select(Session).where(Session.id.in_(on_node))))
    archs = await sessions_db.architectures(db, found)
    views = [
        _container_view(session, kernel, idx, archs[session.id])
        for session in found
        for idx, kernel in enumerate(session.kernels)
        if kernel.node_id == node_id and (statuses is None or kernel.status in statuses)
    ]
    return sorted(views, key=lambda v: (v["created_at"], v["id"]), reverse=True)


async def container_counts(db: DBSession) -> dict[str, int]:
    """How many containers each node has now (kernels not yet terminated)."""
    rows = await db.execute(
        select(Kernel.node_id, func.count())
        .where(Kernel.node_id.is_not(None), Kernel.status.not_in(DEAD_STATUSES))
        .group_by(Kernel.node_id)
    )
    return {node_id: int(count) for node_id, count in rows if node_id is not None}


def _session_view(
    session: Session, project: Project | None, user: User | None, architecture: str | None
) -> dict[str, Any]:
    main = session.kernels[0] if session.kernels else None
    occupying = sessions_db.occupying(session)
    email = user.email if user is not None else None
    node_ids = sorted({k.node_id for k in session.kernels if k.node_id})
    return {
        "id": str(session.id),
        "session_id": session.id,
        "main_kernel_id": main.id if main else None,
        "tag": session.tag,
        "name": session.name,
        "type": session.type,
        # Backend.AI's kernel roles are COMPUTE, INFERENCE and SYSTEM; Shipyard runs compute only
        "main_kernel_role": "COMPUTE",
        "image": session.image,
        "architecture": architecture,
        "registry": split_reference(session.image)[0],
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
        "starts_at": session.starts_at,
        "scheduled_at": _scheduled_at(session),
        "startup_command": session.startup_command,
        "result": session.result,
        "commit_status": None,
        "abusing_reports": [],
        "idle_checks": {},
        "agent_ids": node_ids,
        "agents": node_ids,
        "resource_opts": {},
        "scaling_group": session.scaling_group,
        "mounts": [],
        "vfolder_mounts": [],
        "occupying_slots": occupying,
        "occupied_slots": occupying,
        "requested_slots": session.requested_slots,
        "num_queries": 0,
        "containers": [
            _container_view(session, k, i, architecture) for i, k in enumerate(session.kernels)
        ],
        "dependencies": [],
        "inference_metrics": None,
        "user_uuid": session.user_id,
        "session_name": session.name,
        "sess_id": session.name,
        "lang": session.image,
    }


def _scheduled_at(session: Session) -> datetime | None:
    return next((h.at for h in session.history if h.status == "SCHEDULED"), None)


def _container_view(
    session: Session, kernel: Kernel, idx: int, architecture: str | None
) -> dict[str, Any]:
    running = kernel.status in ("PREPARING", "RUNNING")
    role = kernel.cluster_role
    return {
        "id": str(kernel.id),
        "kernel_id": kernel.id,
        "idx": idx,
        "role": role,
        "hostname": f"{role}{idx + 1}",
        "cluster_idx": idx,
        "local_rank": idx,
        "cluster_role": role,
        "cluster_hostname": f"{role}{idx + 1}",
        "session_id": session.id,
        "image": session.image,
        "architecture": architecture,
        "registry": split_reference(session.image)[0],
        "status": kernel.status,
        "status_changed": session.status_changed,
        "status_info": session.status_info,
        "status_data": {"exit_code": kernel.exit_code} if kernel.exit_code is not None else {},
        "created_at": kernel.created_at,
        "terminated_at": None if running else session.terminated_at,
        "starts_at": session.starts_at,
        "scheduled_at": _scheduled_at(session),
        "abusing_report": None,
        "agent": kernel.node_id,
        # nodes dial out to the control plane: there is no address to reach them at
        "agent_addr": None,
        "container_id": kernel.container_id,
        "resource_opts": {},
        "occupied_slots": session.requested_slots if running else {},
        # the latest sample from the node's heartbeats (controlplane/stats.py); kept at the end
        "live_stat": kernel.live_stat if running else None,
        "last_stat": kernel.live_stat,
        "preopen_ports": [],
    }
