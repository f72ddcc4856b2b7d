"""Nodes (Backend.AI's agents) as the API shows them: stored facts plus what is true right now
(whether the node is connected, what its sessions hold)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

import wire
from controlplane import listing
from controlplane import sessions as sessions_db
from controlplane.db.models import Node

# fields a list `filter` or `order` may name (controlplane/listing.py)
FILTER_FIELDS = ("id", "status", "architecture", "scaling_group", "network_mode", "version")
ORDER_FIELDS = ("id", "status", "architecture", "scaling_group", "first_contact", "last_contact")


@dataclass(frozen=True)
class NodeView:
    id: str
    status: str  # ALIVE while connected, else LOST (or TERMINATED: its join token was revoked)
    status_info: str  # why, for a person
    architecture: str
    scaling_group: str
    network_mode: str
    version: str
    first_contact: datetime
    last_contact: datetime
    available_slots: dict[str, str]  # capacity offered to sessions
    occupied_slots: dict[str, str]  # what sessions on it hold now
    devices: list[dict[str, Any]]  # the accelerator devices its plugins reported
    cpu_cur_pct: float
    mem_cur_bytes: int
    live_stat: dict[str, Any] | None  # its latest heartbeat's figures (controlplane/stats.py)

    def record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in set(FILTER_FIELDS) | set(ORDER_FIELDS)}


def status_of(node: Node, connected: Collection[str]) -> str:
    if node.id in connected:
        return node.status
    return "TERMINATED" if node.status == "TERMINATED" else "LOST"


def _view(node: Node, connected: Collection[str], used: wire.Slots) -> NodeView:
    status = status_of(node, connected)
    return NodeView(
        id=node.id,
        status=status,
        status_info=node.status_info or ("disconnected" if status != node.status else ""),
        architecture=node.architecture,
        scaling_group=node.scaling_group,
        network_mode=node.network_mode,
        version=node.version,
        first_contact=node.first_contact,
        last_contact=node.last_contact,
        available_slots=dict(node.available_slots),
        # every slot the node offers, 0 when nothing holds it
        occupied_slots={**dict.fromkeys(node.available_slots, "0"), **used.to_wire()},
        devices=list(node.accelerators.get("devices", [])),
        cpu_cur_pct=float(node.cpu_cur_pct or 0.0),
        mem_cur_bytes=int(node.mem_cur_bytes or 0),
        live_stat=node.live_stat,
    )


async def list_nodes(db: DBSession, connected: Collection[str]) -> list[NodeView]:
    """Every node we know, in id order."""
    used = await sessions_db.occupied_by_node(db)
    nodes = await db.scalars(select(Node).order_by(Node.id))
    return [_view(n, connected, used.get(n.id, wire.Slots())) for n in nodes]


async def get(db: DBSession, connected: Collection[str], node_id: str) -> NodeView | None:
    node = await db.get(Node, node_id)
    if node is None:
        return None
    used = await sessions_db.occupied_by_node(db)
    return _view(node, connected, used.get(node.id, wire.Slots()))


async def list_page(
    db: DBSession,
    connected: Collection[str],
    *,
    statuses: Sequence[str] | None = None,
    scaling_group: str | None = None,
    conditions: Sequence[listing.Condition] = (),
    orderings: Sequence[listing.Ordering] = (),
    limit: int,
    offset: int,
) -> tuple[list[NodeView], int]:
    """One page of nodes and how many match in all. The status is computed (connected or not),
    so the filtering happens here rather than in SQL; a cluster has hundreds of nodes, not
    millions."""
    views = {v.id: v for v in await list_nodes(db, connected)}
    records = [
        v.record()
        for v in views.values()
        if (statuses is None or v.status in statuses)
        and (scaling_group is None or v.scaling_group == scaling_group)
        and listing.matches(conditions, v.record())
    ]
    ordered = listing.sort_records(records, orderings)
    return [views[r["id"]] for r in ordered[offset : offset + limit]], len(ordered)
