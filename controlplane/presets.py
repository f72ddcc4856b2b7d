"""Resource presets: named slot bundles (`small`, `gpu-1`), and which of them fit now
(docs/backendai-api.md §13.4).

A preset fits when one connected node has that much free now (a session runs on one node) and
the keypair's policy leaves room for it. Shipyard's keypair policy, `default`, limits nothing
beyond the nodes' capacity, so the keypair's limits are "Infinity" and only free capacity
decides. Group (project) figures are "NaN", as Backend.AI sends them when group resource
visibility is off.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

import wire
from controlplane import nodes, tenancy
from controlplane import sessions as sessions_db
from controlplane.db.models import OCCUPYING_STATUSES, Keypair, ResourcePreset, Session
from controlplane.errors import InvalidAPIParams, ObjectNotFound


async def list_presets(db: DBSession) -> list[ResourcePreset]:
    return list(await db.scalars(select(ResourcePreset).order_by(ResourcePreset.name)))


async def get(db: DBSession, name: str) -> ResourcePreset | None:
    return await db.get(ResourcePreset, name)


async def create(
    db: DBSession, name: str, slots: dict[str, str], shared_memory: str | None
) -> ResourcePreset:
    if await db.get(ResourcePreset, name) is not None:
        raise InvalidAPIParams(f"the preset {name!r} already exists")
    try:
        checked = sessions_db.requested_slots(slots)
        shmem = wire.parse_size(shared_memory) if shared_memory is not None else None
    except ValueError as exc:
        raise InvalidAPIParams(f"preset {name!r}: {exc}") from exc
    if shmem is not None and shmem > checked["mem"]:
        raise InvalidAPIParams(f"preset {name!r}: shared memory is more than its memory")
    preset = ResourcePreset(name=name, resource_slots=checked.to_wire(), shared_memory=shmem)
    db.add(preset)
    await db.flush()
    return preset


async def delete(db: DBSession, name: str) -> None:
    preset = await db.get(ResourcePreset, name)
    if preset is None:
        raise ObjectNotFound(f"there is no preset {name!r}")
    await db.delete(preset)
    await db.flush()


@dataclass(frozen=True)
class Fit:
    keypair_using: wire.Slots
    free: wire.Slots  # summed over connected nodes
    free_per_node: list[wire.Slots]
    presets: list[tuple[ResourcePreset, bool]]  # each preset and whether it fits now


async def check(db: DBSession, keypair: Keypair, connected: set[str]) -> Fit:
    using = wire.Slots()
    for session in await db.scalars(
        select(Session).where(
            Session.access_key == keypair.access_key, Session.status.in_(OCCUPYING_STATUSES)
        )
    ):
        using = using + wire.Slots.from_wire(session.requested_slots)
    free_per_node = [
        wire.Slots.from_wire(n.available_slots) - wire.Slots.from_wire(n.occupied_slots)
        for n in await nodes.list_nodes(db, connected)
        if n.status == "ALIVE" and n.scaling_group == tenancy.SCALING_GROUP
    ]
    free = wire.Slots()
    for slots in free_per_node:
        free = free + slots
    fits = [
        (p, any(wire.Slots.from_wire(p.resource_slots).fits_in(f) for f in free_per_node))
        for p in await list_presets(db)
    ]
    return Fit(using, free, free_per_node, fits)
