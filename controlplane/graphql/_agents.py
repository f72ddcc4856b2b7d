"""agent, agents and agent_list: nodes, for superadmins (a node runs every domain's sessions);
modify_agent moves a node to another scaling group."""

from __future__ import annotations

from typing import Any

from ariadne import MutationType, ObjectType, QueryType

import wire
from controlplane import nodes
from controlplane.db.models import Node, ScalingGroup
from controlplane.graphql._common import Info, context, list_args, split_csv, superadmin_only
from controlplane.graphql._sessions import container_counts, containers_on

query = QueryType()
mutation = MutationType()
agent_type = ObjectType("Agent")
MIB = 2**20


@query.field("agent")
async def resolve_agent(_: Any, info: Info, agent_id: str) -> dict[str, Any] | None:
    ctx = superadmin_only(info)
    async with ctx.core.db() as db:
        node = await nodes.get(db, ctx.core.hub.connected(), agent_id)
        counts = await container_counts(db)
    return _agent_view(node, counts) if node is not None else None


@query.field("agents")
async def resolve_agents(
    _: Any, info: Info, scaling_group: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    ctx = superadmin_only(info)
    async with ctx.core.db() as db:
        found = await nodes.list_nodes(db, ctx.core.hub.connected())
        counts = await container_counts(db)
    statuses = split_csv(status)
    return [
        _agent_view(n, counts)
        for n in found
        if (statuses is None or n.status in statuses)
        and (scaling_group is None or n.scaling_group == scaling_group)
    ]


@agent_type.field("compute_containers")
async def resolve_compute_containers(
    agent: dict[str, Any], info: Info, status: str | None = None
) -> list[dict[str, Any]]:
    # only superadmins see agents at all; this runs only when the field is selected
    async with context(info).core.db() as db:
        return await containers_on(db, agent["id"], split_csv(status))


@query.field("agent_list")
async def resolve_agent_list(
    _: Any,
    info: Info,
    limit: int,
    offset: int,
    filter: str | None = None,
    order: str | None = None,
    scaling_group: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    ctx = superadmin_only(info)
    args = list_args(
        limit,
        offset,
        filter,
        order,
        filter_fields=nodes.FILTER_FIELDS,
        order_fields=nodes.ORDER_FIELDS,
    )
    async with ctx.core.db() as db:
        page, total = await nodes.list_page(
            db,
            ctx.core.hub.connected(),
            statuses=split_csv(status),
            scaling_group=scaling_group,
            conditions=args.conditions,
            orderings=args.orderings,
            limit=args.limit,
            offset=args.offset,
        )
        counts = await container_counts(db)
    return {"items": [_agent_view(n, counts) for n in page], "total_count": total}


def _agent_view(node: nodes.NodeView, container_counts: dict[str, int]) -> dict[str, Any]:
    available = wire.Slots.from_wire(node.available_slots)
    occupied = wire.Slots.from_wire(node.occupied_slots)
    return {
        "id": node.id,
        "status": node.status,
        "status_changed": node.last_contact,
        "region": "local",
        "architecture": node.architecture,
        "scaling_group": node.scaling_group,
        "schedulable": node.status == "ALIVE",
        "available_slots": node.available_slots,
        "occupied_slots": node.occupied_slots,
        # nodes dial out to the control plane: there is no address to reach them at
        "addr": None,
        "first_contact": node.first_contact,
        "lost_at": node.last_contact if node.status == "LOST" else None,
        # Backend.AI's per-device metrics; the node reports only totals (cpu_cur_pct and
        # mem_cur_bytes), and the client's formatter needs the per-device form or null
        "live_stat": None,
        "version": node.version,
        "compute_plugins": {p: {} for p in sorted({d["plugin"] for d in node.devices})},
        "hardware_metadata": {"accelerators": node.devices},
        "local_config": {"network_mode": node.network_mode},
        "network_mode": node.network_mode,
        "cpu_cur_pct": node.cpu_cur_pct,
        "mem_cur_bytes": node.mem_cur_bytes,
        # Shipyard never terminates a kernel for abusing its node
        "auto_terminate_abusing_kernel": False,
        "container_count": container_counts.get(node.id, 0),
        # Backend.AI's older per-slot fields: memory in MiB, whole GPUs; no TPU slots exist
        "mem_slots": int(available["mem"]) // MIB,
        "cpu_slots": float(available["cpu"]),
        "gpu_slots": float(available["cuda.device"]),
        "tpu_slots": 0.0,
        "used_mem_slots": int(occupied["mem"]) // MIB,
        "used_cpu_slots": float(occupied["cpu"]),
        "used_gpu_slots": float(occupied["cuda.device"]),
        "used_tpu_slots": 0.0,
    }


@mutation.field("modify_agent")
async def resolve_modify_agent(
    _: Any, info: Info, id: str, props: dict[str, Any]
) -> dict[str, Any]:
    """Put a node in another scaling group (Backend.AI's ModifyAgentInput.scaling_group; its
    sessions stay where they run, new ones of that pool may go there)."""
    ctx = superadmin_only(info)
    pool = props.get("scaling_group")
    async with ctx.core.db() as db:
        node = await db.get(Node, id)
        if node is None:
            return {"ok": False, "msg": f"no node {id!r}"}
        if pool is not None:
            if await db.get(ScalingGroup, pool) is None:
                return {"ok": False, "msg": f"no scaling group named {pool!r}"}
            node.scaling_group = pool
        await db.commit()
    if pool is not None:
        ctx.core.hub.update_facts(id, scaling_group=pool)  # the scheduler's node set
    ctx.core.changed()  # the pool's waiting sessions may fit now
    return {"ok": True, "msg": ""}
