"""Event-driven placement of pending sessions onto connected nodes, and starting their kernels.

Anything that frees or adds capacity (a create, a termination, a node registering) calls
`wake()`; a slow periodic sweep is only a safety net. Placement is first-come first-served, but a
session that does not fit does not block smaller ones behind it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import select

import wire
from controlplane import sessions as sessions_db
from controlplane.db.models import OCCUPYING_STATUSES, Image, Kernel, Node, Session
from controlplane.errors import NodeUnavailable

if TYPE_CHECKING:
    from controlplane.core import Core

SWEEP_INTERVAL = 10.0
CREATE_TIMEOUT = 180.0


class Scheduler:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._wakeup = anyio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(SWEEP_INTERVAL):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()
            await self.schedule_once()

    async def schedule_once(self) -> None:
        core = self._core
        connected = core.hub.connected()
        async with core.db() as db:
            pending = list(
                await db.scalars(
                    select(Session).where(Session.status == "PENDING").order_by(Session.created_at)
                )
            )
            if not pending:
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

            events = []
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
            core.spawn(self.start_kernel, session_id)

    async def start_kernel(self, session_id: uuid.UUID) -> None:
        """SCHEDULED -> PREPARING -> RUNNING (or ERROR with the node's reason)."""
        core = self._core
        async with core.db() as db:
            session = await db.get(Session, session_id)
            if session is None or session.node_id is None:
                return
            node_id = session.node_id
            event = await sessions_db.transition(
                db,
                session,
                "PREPARING",
                f"creating the container on node {node_id}",
                expect=("SCHEDULED",),
            )
            if event is None:
                return
            kernel = Kernel(session_id=session.id, node_id=node_id, status="PREPARING")
            db.add(kernel)
            await core.publish(db, event)
            request = wire.CreateKernel(
                req_id="",
                kernel_id=str(kernel.id),
                session_id=str(session.id),
                owner_access_key=session.access_key,
                image=session.image,
                slots=session.requested_slots,
                environ=session.environ,
            )
        try:
            conn = core.hub.get(node_id)
            reply = await conn.request(
                lambda req_id: _with_req_id(request, req_id), wait=CREATE_TIMEOUT
            )
        except NodeUnavailable as exc:
            reply = wire.Reply(req_id="", ok=False, error=str(exc))
        async with core.db() as db:
            session = await db.get(Session, session_id)
            kernel_row = await db.get(Kernel, kernel.id)
            assert session is not None and kernel_row is not None
            if not reply.ok:
                kernel_row.status = "ERROR"
                event = await sessions_db.transition(
                    db,
                    session,
                    "ERROR",
                    f"could not start: {reply.error}",
                    expect=("PREPARING", "TERMINATING"),
                )
                await core.publish(db, event)
                return
            kernel_row.container_id = str(reply.result.get("container_id", ""))
            kernel_row.status = "RUNNING"
            event = await sessions_db.transition(
                db,
                session,
                "RUNNING",
                f"container {kernel_row.container_id[:12]} on {node_id}",
                expect=("PREPARING",),
            )
            await core.publish(db, event)
            if event is None:
                # destroyed while it was starting: the container must not outlive the session
                from controlplane.lifecycle import destroy_kernel

                await destroy_kernel(core, node_id, kernel.id)
                return
            batch = session.type == "BATCH"
        if batch:
            from controlplane.lifecycle import run_batch

            await run_batch(core, session_id)


def _with_req_id(message: wire.CreateKernel, req_id: str) -> wire.CreateKernel:
    from dataclasses import replace

    return replace(message, req_id=req_id)


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
