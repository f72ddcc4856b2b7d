"""scaling_group(s) and keypair_resource_polic(y|ies) with their mutations, in Backend.AI's
shapes (docs/backendai-api.md §13.2, §13.3, §16): what the scheduler enforces
(controlplane/policies.py, controlplane/scheduler.py). Numbers are numbers where the client
formats numbers (§16: a null `max_vfolder_size` crashes it); 0 means no limit.
"""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import MutationType, QueryType
from sqlalchemy import Select, select

from controlplane import policies, scalinggroups, tenancy
from controlplane.db.models import (
    DEFAULT_POLICY,
    Keypair,
    Project,
    ResourcePolicy,
    ScalingGroup,
    User,
)
from controlplane.errors import InvalidAPIParams
from controlplane.graphql._common import Context, Info, admin_only, context, superadmin_only
from controlplane.tenancy import DEFAULT_DOMAIN

query = QueryType()
mutation = MutationType()
# the session types the scheduler places (controlplane/sessions.py parse_create)
SESSION_TYPES = ["interactive", "batch"]


def _visible_groups(ctx: Context) -> Select[ScalingGroup]:
    """The pools an admin may see: a domain admin only those its domain's projects may use."""
    found = select(ScalingGroup).order_by(ScalingGroup.name)
    managed = tenancy.managed_domain(ctx.requester)
    return found if managed is None else found.where(scalinggroups.usable_in_domain(managed))


@query.field("scaling_group")
async def resolve_scaling_group(
    _: Any, info: Info, name: str | None = None
) -> dict[str, Any] | None:
    ctx = admin_only(info)
    async with ctx.core.db() as db:
        group = await db.scalar(_visible_groups(ctx).where(ScalingGroup.name == name))
        return scaling_group_view(group) if group is not None else None


@query.field("scaling_groups")
async def resolve_scaling_groups(
    _: Any, info: Info, name: str | None = None, is_active: bool | None = None
) -> list[dict[str, Any]]:
    ctx = admin_only(info)
    found = _visible_groups(ctx)
    if name is not None:
        found = found.where(ScalingGroup.name == name)
    if is_active is not None:
        found = found.where(ScalingGroup.is_active.is_(is_active))
    async with ctx.core.db() as db:
        return [scaling_group_view(g) for g in await db.scalars(found)]


@mutation.field("create_scaling_group")
async def resolve_create_scaling_group(
    _: Any, info: Info, name: str, props: dict[str, Any]
) -> dict[str, Any]:
    """A new node pool (superadmin), bound to nothing until associated."""
    ctx = superadmin_only(info)
    opts = props.get("scheduler_opts") or {}
    async with ctx.core.db() as db:
        try:
            group = await scalinggroups.create(
                db,
                name,
                description=props.get("description") or "",
                is_active=props.get("is_active", True) is not False,
                is_public=props.get("is_public", True) is not False,
                scheduler=props.get("scheduler") or "fifo",
                scheduler_opts=opts if isinstance(opts, dict) else {},
            )
        except InvalidAPIParams as exc:
            return {"ok": False, "msg": exc.msg, "scaling_group": None}
        await db.commit()
        return {"ok": True, "msg": "", "scaling_group": scaling_group_view(group)}


@mutation.field("associate_scaling_group_with_domain")
async def resolve_bind_domain(
    _: Any, info: Info, scaling_group: str, domain: str
) -> dict[str, Any]:
    """Let every project of `domain` use the pool (superadmin)."""
    ctx = superadmin_only(info)
    async with ctx.core.db() as db:
        group = await db.get(ScalingGroup, scaling_group)
        if group is None or await tenancy.get_domain(db, domain) is None:
            return {"ok": False, "msg": "no such scaling group or domain"}
        await scalinggroups.bind_domain(db, group, domain)
        await db.commit()
    return {"ok": True, "msg": ""}


@mutation.field("associate_scaling_group_with_user_group")
async def resolve_bind_project(
    _: Any, info: Info, scaling_group: str, user_group: uuid.UUID
) -> dict[str, Any]:
    """Let one project (Backend.AI's user group, by id) use the pool (superadmin)."""
    ctx = superadmin_only(info)
    async with ctx.core.db() as db:
        group = await db.get(ScalingGroup, scaling_group)
        project = await db.get(Project, user_group)
        if group is None or project is None:
            return {"ok": False, "msg": "no such scaling group or project"}
        await scalinggroups.bind_project(db, group, project)
        await db.commit()
    return {"ok": True, "msg": ""}


@query.field("keypair_resource_policy")
async def resolve_keypair_resource_policy(
    _: Any, info: Info, name: str | None = None
) -> dict[str, Any] | None:
    """Admins see any policy; users only their own keypair's (name null: that one)."""
    ctx = context(info)
    async with ctx.core.db() as db:
        keypair = await db.get(Keypair, ctx.requester.access_key)
        assert keypair is not None
        if name is None:
            name = keypair.resource_policy
        elif name != keypair.resource_policy and not ctx.requester.is_admin:
            return None
        row = await db.get(ResourcePolicy, name)
        return resource_policy_view(row) if row is not None else None


@query.field("keypair_resource_policies")
async def resolve_keypair_resource_policies(_: Any, info: Info) -> list[dict[str, Any]]:
    ctx = context(info)
    found = select(ResourcePolicy).order_by(ResourcePolicy.name)
    async with ctx.core.db() as db:
        if not ctx.requester.is_admin:
            keypair = await db.get(Keypair, ctx.requester.access_key)
            assert keypair is not None
            found = found.where(ResourcePolicy.name == keypair.resource_policy)
        return [resource_policy_view(row) for row in await db.scalars(found)]


@mutation.field("create_keypair_resource_policy")
async def resolve_create_policy(
    _: Any, info: Info, name: str, props: dict[str, Any]
) -> dict[str, Any]:
    ctx = superadmin_only(info)  # policies span domains
    async with ctx.core.db() as db:
        try:
            row = await policies.create(db, name, props)
        except policies.PolicyError as exc:
            return {"ok": False, "msg": str(exc)}
        await db.commit()
        return {"ok": True, "msg": "", "resource_policy": resource_policy_view(row)}


@mutation.field("modify_keypair_resource_policy")
async def resolve_modify_policy(
    _: Any, info: Info, name: str, props: dict[str, Any]
) -> dict[str, Any]:
    ctx = superadmin_only(info)  # policies span domains
    async with ctx.core.db() as db:
        try:
            await policies.modify(db, name, props)
        except policies.PolicyError as exc:
            return {"ok": False, "msg": str(exc)}
        await db.commit()
    ctx.core.changed()  # a looser policy may let waiting sessions start
    return {"ok": True, "msg": ""}


@mutation.field("delete_keypair_resource_policy")
async def resolve_delete_policy(_: Any, info: Info, name: str) -> dict[str, Any]:
    ctx = superadmin_only(info)  # policies span domains
    if name == DEFAULT_POLICY:
        return {"ok": False, "msg": "the default policy cannot be deleted"}
    async with ctx.core.db() as db:
        row = await db.get(ResourcePolicy, name)
        if row is None:
            return {"ok": False, "msg": f"no resource policy named {name!r}"}
        user = await policies.in_use(db, name)
        if user is not None:
            return {"ok": False, "msg": f"a {user} still has the policy {name!r}: move it first"}
        await db.delete(row)
        await db.commit()
    return {"ok": True, "msg": ""}


def scaling_group_view(group: ScalingGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "description": group.description,
        "is_active": group.is_active,
        "is_public": group.is_public,
        "created_at": group.created_at,
        # no app proxy: session apps are not served yet
        "wsproxy_addr": None,
        "wsproxy_api_token": None,
        # Backend.AI's name for a fixed set of nodes that join on their own
        "driver": "static",
        "driver_opts": {},
        "scheduler": group.scheduler,
        "scheduler_opts": {"allowed_session_types": SESSION_TYPES, **group.scheduler_opts},
        "use_host_network": False,
    }


def resource_policy_view(row: ResourcePolicy) -> dict[str, Any]:
    return {
        "name": row.name,
        "created_at": row.created_at,
        "default_for_unspecified": row.default_for_unspecified,
        "total_resource_slots": row.total_resource_slots,
        "max_session_lifetime": row.max_session_lifetime,
        "max_concurrent_sessions": row.max_concurrent_sessions,
        "max_containers_per_session": row.max_containers_per_session,
        "idle_timeout": row.idle_timeout,
        "utilization_window": row.utilization_window,
        "min_cpu_util_pct": row.min_cpu_util_pct,
        "min_gpu_util_pct": row.min_gpu_util_pct,
        "allowed_vfolder_hosts": row.allowed_vfolder_hosts,
        "max_vfolder_count": row.max_vfolder_count,
        "max_vfolder_size": row.max_vfolder_size,
        "max_quota_scope_size": 0,
        "allowed_scaling_groups": row.allowed_scaling_groups,
        "allowed_images": row.allowed_images,
    }


@mutation.field("set_resource_policy")
async def resolve_set_resource_policy(
    _: Any,
    info: Info,
    name: str,
    access_key: str | None = None,
    email: str | None = None,
    project: str | None = None,
    domain_name: str | None = None,
) -> dict[str, Any]:
    """Put one keypair, user or project under the policy `name` (admin)."""
    ctx = admin_only(info)
    if sum(x is not None for x in (access_key, email, project)) != 1:
        return {"ok": False, "msg": "name exactly one of access_key, email and project"}
    async with ctx.core.db() as db:
        if await db.get(ResourcePolicy, name) is None:
            return {"ok": False, "msg": f"no resource policy named {name!r}"}
        target: Keypair | User | Project | None
        if access_key is not None:
            target = await db.get(Keypair, access_key)
        elif email is not None:
            target = await db.scalar(select(User).where(User.email == email))
        else:
            target = await db.scalar(
                select(Project).where(
                    Project.name == project, Project.domain_name == (domain_name or DEFAULT_DOMAIN)
                )
            )
        if target is None:
            return {"ok": False, "msg": "no such keypair, user or project"}
        target.resource_policy = name
        await db.commit()
    ctx.core.changed()  # a looser policy may let waiting sessions start
    return {"ok": True, "msg": ""}
