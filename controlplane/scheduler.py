"""Event-driven placement of pending sessions onto connected nodes.

Placing is all it does: a session it placed (now SCHEDULED, with its node) is handed to the
`on_placed` callback the server wires in (the session lifecycle starts the kernel).

Anything that frees or adds capacity (a create, a termination, a node registering) calls
`wake()`; a slow periodic sweep is only a safety net. Placement is first-come first-served, but a
session that does not fit does not block smaller ones behind it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio
from sqlalchemy import select

import wire
from controlplane import pipelines
from controlplane import sessions as sessions_db
from controlplane.core import Core
from controlplane.db.models import OCCUPYING_STATUSES, Image, Node, Session

log = logging.getLogger(__name__)
SWEEP_INTERVAL = 10.0


class Scheduler:
    def __init__(self, core: Core, on_placed: Callable[[uuid.UUID], None]) -> None:
        self._core = core
        self._on_placed = on_placed
        self._wakeup = anyio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(SWEEP_INTERVAL):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()
            try:
                await self.schedule_once()
            except Exception:  # the database went away for a moment: the next pass retries
                log.exception("a scheduling pass failed")

    async def schedule_once(self) -> None:
        core = self._core
        connected = core.hub.connected()
        async with core.db() as db:
            pending = list(
                await db.scalars(
                    select(Session).where(Session.status == "PENDING").order_by(Session.created_at)
                )
            )
            pending, events = await pipelines.hold_back(db, pending, core.clock())
            if not pending and not events:
                return
            nodes = [
                n
                for n in await db.scalars(select(Node).where(Node.status == "ALIVE"))
                if n.id in connected
            ]
            occupying = list(
                await db.scalars(select(Session).where(Session.status.in_(OCCUPYING_STATUSES)))
            )
            free = {
                n.id: sessions_db.free_slots(
                    wire.Slots.from_wire(n.available_slots),
                    [s for s in occupying if s.node_id == n.id],
                )
                for n in nodes
            }
            images: dict[str, set[str]] = {}
            for image in await db.scalars(select(Image)):
                images.setdefault(image.node_id, set()).add(image.name)

            placed: list[uuid.UUID] = []
            for session in pending:
                request = wire.Slots.from_wire(session.requested_slots)
                holders = [n for n in nodes if session.image in images.get(n.id, set())]
                fitting = [n for n in holders if request.fits_in(free[n.id])]
                if not fitting:
                    reason = _why_pending(session.image, request, nodes, holders, free)
                    if reason != session.status_info:
                        events.append(
                            await sessions_db.transition(
                                db, session, "PENDING", reason, expect=("PENDING",)
                            )
                        )
                    continue
                node = max(fitting, key=lambda n: (free[n.id]["mem"], free[n.id]["cpu"]))
                event = await sessions_db.transition(
                    db,
                    session,
                    "SCHEDULED",
                    f"placed on node {node.id}",
                    expect=("PENDING",),
                    node_id=node.id,
                )
                if event is not None:
                    free[node.id] = free[node.id] - request
                    placed.append(session.id)
                    events.append(event)
            await db.commit()
        for event in events:
            if event is not None:
                core.events.publish(event)
        for session_id in placed:
            self._on_placed(session_id)


def _why_pending(
    image: str,
    request: wire.Slots,
    nodes: list[Node],
    holders: list[Node],
    free: dict[str, wire.Slots],
) -> str:
    if not nodes:
        return "waiting for a node to connect"
    if not holders:
        return f"waiting for a connected node that has the image {image}"
    best = max(holders, key=lambda n: (free[n.id]["mem"], free[n.id]["cpu"]))
    short = ", ".join(request.shortfall(free[best.id]))
    return (
        f"waiting for resources: needs {request.describe()}; node {best.id} has"
        f" {free[best.id].describe()} free (short of {short})"
    )
