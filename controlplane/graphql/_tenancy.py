"""domain, domains, group, groups_by_name and groups: domains and projects (Backend.AI's groups).

Users see their own domain and the projects they are members of; admins those of the domains
they manage (a superadmin: all). Limits and
features Shipyard does not have are Backend.AI's empty values: `{}` slots (no limit beyond the
nodes), no virtual-folder hosts, no docker registries, no integration id.
"""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import QueryType

from controlplane import tenancy
from controlplane.db.models import Domain, Project
from controlplane.errors import InsufficientPrivilege
from controlplane.graphql._common import Info, admin_domain, admin_only, context

query = QueryType()


@query.field("domain")
async def resolve_domain(_: Any, info: Info, name: str | None = None) -> dict[str, Any] | None:
    ctx = context(info)
    own = ctx.requester.user.domain_name
    if name not in (None, own):
        if not ctx.requester.is_admin:
            raise InsufficientPrivilege("only admins may look at another domain")
        admin_domain(ctx, name)
    async with ctx.core.db() as db:
        domain = await tenancy.get_domain(db, name or own)
    return domain_view(domain) if domain is not None else None


@query.field("domains")
async def resolve_domains(
    _: Any, info: Info, is_active: bool | None = None
) -> list[dict[str, Any]]:
    ctx = admin_only(info)
    if is_active is False:
        return []  # domains cannot be deactivated
    async with ctx.core.db() as db:
        found = await tenancy.list_domains(db, name=tenancy.managed_domain(ctx.requester))
    return [domain_view(d) for d in found]


@query.field("group")
async def resolve_group(
    _: Any, info: Info, id: uuid.UUID, domain_name: str | None = None
) -> dict[str, Any] | None:
    found = await _visible_projects(info, domain_name=domain_name, project_id=id)
    return found[0] if found else None


@query.field("groups_by_name")
async def resolve_groups_by_name(
    _: Any, info: Info, name: str, domain_name: str | None = None
) -> list[dict[str, Any]]:
    return await _visible_projects(info, domain_name=domain_name, name=name)


@query.field("groups")
async def resolve_groups(
    _: Any, info: Info, domain_name: str | None = None, is_active: bool | None = None
) -> list[dict[str, Any]]:
    if is_active is False:
        return []  # projects cannot be deactivated
    return await _visible_projects(info, domain_name=domain_name)


async def _visible_projects(
    info: Info,
    *,
    domain_name: str | None,
    name: str | None = None,
    project_id: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    ctx = context(info)
    user = ctx.requester.user
    if ctx.requester.is_admin:
        domain_name, member = admin_domain(ctx, domain_name), None
    elif domain_name not in (None, user.domain_name):
        raise InsufficientPrivilege("only admins may look at the projects of another domain")
    else:
        member = user.id
    async with ctx.core.db() as db:
        found = await tenancy.list_projects(
            db, domain_name=domain_name, name=name, project_id=project_id, member=member
        )
    return [group_view(p) for p in found]


def domain_view(domain: Domain) -> dict[str, Any]:
    return {
        "name": domain.name,
        "description": None,
        "is_active": True,
        "created_at": domain.created_at,
        "modified_at": domain.created_at,
        "total_resource_slots": {},
        "allowed_vfolder_hosts": {},
        "allowed_docker_registries": [],
        "integration_id": None,
        "scaling_groups": [tenancy.SCALING_GROUP],
    }


def group_view(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": None,
        "is_active": True,
        "created_at": project.created_at,
        "modified_at": project.created_at,
        "domain_name": project.domain_name,
        "total_resource_slots": {},
        "allowed_vfolder_hosts": {},
        "integration_id": None,
        "resource_policy": project.resource_policy,
        "scaling_groups": [tenancy.SCALING_GROUP],
    }
