"""resource_presets and resource_preset; create_user and create_group (docs/backendai-api.md
§13.1, §13.4), and a session's idle_checks (§13.6). Mutations answer `ok: false` with the
reason for a bad request, as Backend.AI's."""

from __future__ import annotations

import uuid
from typing import Any

from ariadne import MutationType, ObjectType, QueryType

from controlplane import presets, tenancy, users
from controlplane.db.models import ResourcePreset
from controlplane.errors import ControlPlaneError, InsufficientPrivilege, InvalidAPIParams
from controlplane.graphql._common import Info, admin_only, context
from controlplane.graphql._tenancy import group_view
from controlplane.graphql._users import user_views

query = QueryType()
mutation = MutationType()
session_type = ObjectType("ComputeSession")


@session_type.field("idle_checks")
def resolve_idle_checks(session: dict[str, Any], info: Info) -> dict[str, object]:
    """Seconds left under each idle check, from the checker's last round (idle.py)."""
    return context(info).core.activity.idle_checks(session["session_id"])


def _preset_view(preset: ResourcePreset) -> dict[str, Any]:
    return {
        "name": preset.name,
        "resource_slots": dict(preset.resource_slots),
        "shared_memory": preset.shared_memory,
    }


@query.field("resource_presets")
async def resolve_resource_presets(_: Any, info: Info) -> list[dict[str, Any]]:
    async with context(info).core.db() as db:
        return [_preset_view(p) for p in await presets.list_presets(db)]


@query.field("resource_preset")
async def resolve_resource_preset(_: Any, info: Info, name: str) -> dict[str, Any] | None:
    async with context(info).core.db() as db:
        preset = await presets.get(db, name)
    return _preset_view(preset) if preset is not None else None


@mutation.field("create_user")
async def resolve_create_user(
    _: Any, info: Info, email: str, props: dict[str, Any]
) -> dict[str, Any]:
    ctx = admin_only(info)
    domain, role = props["domain_name"], props.get("role") or "user"
    tenancy.require_manager(ctx.requester, domain)
    if role == "superadmin" and ctx.requester.user.role != "superadmin":
        raise InsufficientPrivilege("only a superadmin makes superadmins")
    async with ctx.core.db() as db:
        try:
            user = await users.create_user(
                db, email, role=role, domain_name=domain, password=props["password"]
            )
            if props.get("status") not in (None, "active"):
                await users.update_user(db, user, status=props["status"])
            for group_id in props.get("group_ids") or []:
                found = await tenancy.list_projects(
                    db, domain_name=domain, project_id=_uuid(group_id)
                )
                if not found:
                    raise InvalidAPIParams(f"the domain {domain!r} has no group {group_id}")
                await tenancy.set_member(db, found[0], user, member=True)
        except ControlPlaneError as exc:
            return {"ok": False, "msg": exc.msg, "user": None}
        await db.commit()
        [view] = await user_views(db, [user])
    return {"ok": True, "msg": "success", "user": view}


@mutation.field("create_group")
async def resolve_create_group(
    _: Any, info: Info, name: str, props: dict[str, Any]
) -> dict[str, Any]:
    ctx = admin_only(info)
    tenancy.require_manager(ctx.requester, props["domain_name"])
    async with ctx.core.db() as db:
        try:
            project = await tenancy.create_project(db, props["domain_name"], name)
        except ControlPlaneError as exc:
            return {"ok": False, "msg": exc.msg, "group": None}
        await db.commit()
    return {"ok": True, "msg": "success", "group": group_view(project)}


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidAPIParams(f"group id {value!r} is not a UUID") from None
