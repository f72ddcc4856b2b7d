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


# what a list filters and orders by: no JSON column, so a page of a thousand nodes decodes only
# the page's figures
_RECORD_COLUMNS = tuple(getattr(Node, name) for name in sorted({*FILTER_FIELDS, *ORDER_FIELDS}))


def status_of(node_id: str, status: str, connected: Collection[str]) -> str:
    if node_id in connected:
        return status
    return "TERMINATED" if status == "TERMINATED" else "LOST"


def _view(node: Node, connected: Collection[str], used: wire.Slots) -> NodeView:
    status = status_of(node.id, node.status, connected)
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
    so the filtering happens here rather than in SQL, on the listed fields only; a cluster has
    thousands of nodes, not millions."""
    records = []
    for row in await db.execute(select(*_RECORD_COLUMNS).order_by(Node.id)):
        record = row._asdict()
        record["status"] = status_of(row.id, row.status, connected)
        if (
            (statuses is None or record["status"] in statuses)
            and (scaling_group is None or row.scaling_group == scaling_group)
            and listing.matches(conditions, record)
        ):
            records.append(record)
    ordered = listing.sort_records(records, orderings)
    ids = [r["id"] for r in ordered[offset : offset + limit]]
    used = await sessions_db.occupied_by_node(db)
    found = {n.id: n for n in await db.scalars(select(Node).where(Node.id.in_(ids)))}
    page = [_view(found[i], connected, used.get(i, wire.Slots())) for i in ids if i in found]
    return page, len(ordered)
