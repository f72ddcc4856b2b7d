"""scaling_group(s) and keypair_resource_polic(y|ies): what Shipyard enforces, in Backend.AI's
shapes (docs/backendai-api.md §13.2, §13.3, §16).

There is one scaling group, `default`: every node is in it, any session may go to any node,
first come first served. There is one keypair resource policy, `default`, every keypair's: it
limits nothing beyond the nodes' capacity, so its limits are Backend.AI's "unlimited" values,
numbers where the client formats numbers (§16: a null `max_vfolder_size` crashes it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ariadne import QueryType

from controlplane import tenancy
from controlplane.graphql._common import Info, admin_only, context

query = QueryType()
# the session types the scheduler places (controlplane/sessions.py parse_create)
SESSION_TYPES = ["interactive", "batch"]


@query.field("scaling_group")
async def resolve_scaling_group(
    _: Any, info: Info, name: str | None = None
) -> dict[str, Any] | None:
    ctx = admin_only(info)
    if name != tenancy.SCALING_GROUP:
        return None
    async with ctx.core.db() as db:
        return scaling_group_view(await tenancy.bootstrapped_at(db))


@query.field("scaling_groups")
async def resolve_scaling_groups(
    _: Any, info: Info, name: str | None = None, is_active: bool | None = None
) -> list[dict[str, Any]]:
    ctx = admin_only(info)
    if name not in (None, tenancy.SCALING_GROUP) or is_active is False:
        return []
    async with ctx.core.db() as db:
        return [scaling_group_view(await tenancy.bootstrapped_at(db))]


@query.field("keypair_resource_policy")
async def resolve_keypair_resource_policy(
    _: Any, info: Info, name: str | None = None
) -> dict[str, Any] | None:
    # every keypair, the requester's too, has the one policy: users may see it
    ctx = context(info)
    if name not in (None, tenancy.RESOURCE_POLICY):
        return None
    async with ctx.core.db() as db:
        return resource_policy_view(await tenancy.bootstrapped_at(db))


@query.field("keypair_resource_policies")
async def resolve_keypair_resource_policies(_: Any, info: Info) -> list[dict[str, Any]]:
    ctx = context(info)
    async with ctx.core.db() as db:
        return [resource_policy_view(await tenancy.bootstrapped_at(db))]


def scaling_group_view(created_at: datetime) -> dict[str, Any]:
    return {
        "name": tenancy.SCALING_GROUP,
        "description": None,
        "is_active": True,
        "is_public": True,
        "created_at": created_at,
        # no app proxy: session apps are not served yet
        "wsproxy_addr": None,
        "wsproxy_api_token": None,
        # Backend.AI's name for a fixed set of nodes that join on their own
        "driver": "static",
        "driver_opts": {},
        "scheduler": "fifo",
        "scheduler_opts": {"allowed_session_types": SESSION_TYPES},
        "use_host_network": False,
    }


def resource_policy_view(created_at: datetime) -> dict[str, Any]:
    return {
        "name": tenancy.RESOURCE_POLICY,
        "created_at": created_at,
        # slots missing from total_resource_slots ({}: all of them) are unlimited
        "default_for_unspecified": "UNLIMITED",
        "total_resource_slots": {},
        "max_session_lifetime": 0,
        "max_concurrent_sessions": None,
        # a Shipyard session is one container
        "max_containers_per_session": 1,
        "idle_timeout": 0,
        "allowed_vfolder_hosts": {},
        "max_vfolder_count": 0,
        "max_vfolder_size": 0,
        "max_quota_scope_size": 0,
    }
