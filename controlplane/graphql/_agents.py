"""agent and agent_list: nodes, for admins."""

from __future__ import annotations

from typing import Any

from ariadne import QueryType

from controlplane import nodes
from controlplane.graphql._common import Info, admin_only, list_args, split_csv

query = QueryType()


@query.field("agent")
async def resolve_agent(_: Any, info: Info, agent_id: str) -> dict[str, Any] | None:
    ctx = admin_only(info)
    async with ctx.core.db() as db:
        node = await nodes.get(db, ctx.core.hub.connected(), agent_id)
    return _agent_view(node) if node is not None else None


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
    ctx = admin_only(info)
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
    return {"items": [_agent_view(n) for n in page], "total_count": total}


def _agent_view(node: nodes.NodeView) -> dict[str, Any]:
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
        "compute_plugins": {},
        "hardware_metadata": {"accelerators": node.accelerators.get("devices", [])},
        "local_config": {"network_mode": node.network_mode},
        "network_mode": node.network_mode,
        "cpu_cur_pct": node.cpu_cur_pct,
        "mem_cur_bytes": node.mem_cur_bytes,
    }
