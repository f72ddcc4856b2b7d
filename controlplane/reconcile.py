"""Keeping the records true to what the nodes report: registration, kernel exits, lost nodes,
and what a restart of the control plane left half done.

After a restart (`recover_after_restart`, before serving) no node is connected and sessions may
be caught between states. Starts go back to PENDING; each node's registration then settles
every kernel it reports or no longer has (`on_register`):

| session            | kernel reported running  | reported stopped         | not reported          |
|--------------------|--------------------------|--------------------------|-----------------------|
| PENDING (restart), | adopted: RUNNING         | removed; start retried   | start retried         |
| SCHEDULED, PREP.   | (one kernel per session) | by the scheduler         | by the scheduler      |
| RUNNING            | kept                     | ERROR (exit code, OOM)   | ERROR ("vanished")    |
| TERMINATING        | removed, then TERMINATED | removed, then TERMINATED | TERMINATED            |
| ended, or unknown  | removed                  | removed                  | -                     |
| (running elsewhere)| removed                  | removed                  | -                     |
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update

import wire
from controlplane import images as images_db
from controlplane import lifecycle, nodecalls, stats
from controlplane import sessions as sessions_db
from controlplane.core import Core
from controlplane.db.models import ACTIVE_STATUSES, Kernel, Node, Session
from controlplane.db.types import utcnow
from controlplane.errors import NodeUnavailable
from controlplane.events import SessionEvent
from controlplane.nodehub import NodeFacts

log = logging.getLogger(__name__)
STARTING = ("PENDING", "SCHEDULED", "PREPARING")


async def recover_after_restart(core: Core) -> None:
    """Before serving: forget connections of the previous process, put interrupted starts back
    in the queue, and end terminations that have no container left to remove."""
    async with core.db() as db:
        # nobody is connected yet; each node has one heartbeat timeout from now to come back
        await db.execute(
            update(Node)
            .where(Node.status != "TERMINATED")
            .values(status="LOST", status_info="waiting for it to register", last_contact=utcnow())
        )
        events: list[SessionEvent | None] = []
        for session in await db.scalars(
            select(Session).where(Session.status.in_(("SCHEDULED", "PREPARING")))
        ):
            events.append(
                await sessions_db.transition(
                    db,
                    session,
                    "PENDING",
                    "control plane restarted while starting; retried or adopted",
                    expect=("SCHEDULED", "PREPARING"),
                    node_id=None,
                )
            )
        for session in await db.scalars(select(Session).where(Session.status == "TERMINATING")):
            live = await db.scalar(
                select(Kernel.id).where(
                    Kernel.session_id == session.id,
                    Kernel.node_id.is_not(None),
                    Kernel.status != "TERMINATED",
                )
            )
            if live is None:
                events.append(
                    await sessions_db.transition(
                        db, session, "TERMINATED", "terminated", expect=("TERMINATING",)
                    )
                )
        await core.publish(db, *events)


async def on_register(core: Core, message: wire.Register) -> NodeFacts:
    """Record the node and reconcile our session records with the kernels it really has; what
    the scheduler places by comes back, for the caller to put on the node's connection."""
    node_id = message.node_id
    now = utcnow()
    to_destroy: list[str] = []
    to_finish: set[uuid.UUID] = set()
    events: list[SessionEvent | None] = []
    async with core.db() as db:
        node = await db.get(Node, node_id)
        if node is None:
            node = Node(id=node_id, first_contact=now)
            db.add(node)
        node.status = "ALIVE"
        node.status_info = ""
        node.architecture = message.architecture
        node.network_mode = message.network_mode
        node.version = message.version
        node.available_slots = message.slots
        node.accelerators = {"devices": message.accelerators}
        node.last_contact = now
        await db.flush()
        await images_db.sync_node_images(db, node_id, message.images)

        reported = {k.kernel_id: k for k in message.kernels}
        rows = {
            str(k.id): k for k in await db.scalars(select(Kernel).where(Kernel.node_id == node_id))
        }
        adopted: set[uuid.UUID] = set()
        for kernel_id, info in reported.items():
            row = rows.get(kernel_id)
            session = await db.get(Session, row.session_id) if row is not None else None
            if (
                row is None
                or session is None
                or session.status not in ACTIVE_STATUSES
                or row.status == "TERMINATED"
            ):
                to_destroy.append(kernel_id)  # not ours any more (or never recorded)
            elif session.status == "TERMINATING":
                to_finish.add(session.id)
            elif session.status == "RUNNING" and session.node_id != node_id:
                row.status = "TERMINATED"  # started again elsewhere while this node was away
                to_destroy.append(kernel_id)
            elif session.status in STARTING:
                ours = session.node_id in (None, node_id) and session.id not in adopted
                if info.running and ours:
                    adopted.add(session.id)
                    row.status = "RUNNING"
                    row.container_id = info.container_id
                    events.append(
                        await sessions_db.transition(
                            db,
                            session,
                            "RUNNING",
                            f"adopted container {info.container_id[:12]} on {node_id}",
                            expect=STARTING,
                            node_id=node_id,
                        )
                    )
                else:
                    row.status = "TERMINATED"  # it never started: the scheduler starts it again
                    to_destroy.append(kernel_id)
            elif not info.running:
                row.status = "TERMINATED"
                row.exit_code = info.exit_code
                events.append(
                    await sessions_db.transition(
                        db,
                        session,
                        "ERROR",
                        exit_reason(info.exit_code, info.oom_killed, session),
                        expect=ACTIVE_STATUSES,
                        exit_code=info.exit_code,
                        status_data={"exit_code": info.exit_code, "oom_killed": info.oom_killed},
                    )
                )
        for kernel_id, row in rows.items():
            if kernel_id in reported or row.status == "TERMINATED":
                continue
            session = await db.get(Session, row.session_id)
            assert session is not None
            if session.status == "TERMINATING":
                to_finish.add(session.id)
            elif session.node_id != node_id:
                # a start the restart interrupted (PENDING again), or made again elsewhere
                row.status = "TERMINATED"
            elif session.status == "RUNNING":
                row.status = "TERMINATED"
                events.append(
                    await sessions_db.transition(
                        db,
                        session,
                        "ERROR",
                        "the container vanished while the node was away",
                        expect=("RUNNING",),
                    )
                )
        facts = NodeFacts(
            node.scaling_group,
            wire.Slots.from_wire(message.slots),
            frozenset(info.name for info in message.images),
        )
        await core.publish(db, *events)
    core.changed()
    for kernel_id in to_destroy:
        core.spawn(_destroy_leftover, core, node_id, kernel_id)
    for session_id in to_finish:
        core.spawn(
            lifecycle.finish_termination,
            core,
            session_id,
            f"terminated (finished when node {node_id} registered again)",
            session_id=session_id,
        )
    return facts


async def _destroy_leftover(core: Core, node_id: str, kernel_id: str) -> None:
    try:
        await nodecalls.destroy_kernel(core.hub, node_id, kernel_id)
    except NodeUnavailable as exc:  # it is reported again when the node registers next time
        log.info("leftover kernel %s stays on node %s for now: %s", kernel_id, node_id, exc.msg)
    else:
        log.info("removed leftover kernel %s on node %s", kernel_id, node_id)


def exit_reason(exit_code: int | None, oom_killed: bool, session: Session) -> str:
    if oom_killed:
        mem = wire.Slots.from_wire(session.requested_slots)["mem"]
        return f"killed: out of memory (memory limit {wire.format_bytes(mem)})"
    return f"the container exited with code {exit_code}"


async def on_kernel_exited(core: Core, node_id: str, message: wire.KernelExited) -> None:
    async with core.db() as db:
        try:
            kernel = await db.get(Kernel, uuid.UUID(message.kernel_id))
        except ValueError:
            return
        if kernel is None or kernel.node_id != node_id:
            return
        kernel.status = "TERMINATED"
        kernel.exit_code = message.exit_code
        session = await db.get(Session, kernel.session_id)
        assert session is not None
        event = await sessions_db.transition(
            db,
            session,
            "ERROR",
            exit_reason(message.exit_code, message.oom_killed, session),
            expect=("PREPARING", "RUNNING"),
            exit_code=message.exit_code,
            status_data={"exit_code": message.exit_code, "oom_killed": message.oom_killed},
        )
        await core.publish(db, event)


@dataclass(frozen=True)
class Beat:
    """A heartbeat as received: from which node, and when (the node was alive then, however
    long the write waits behind others)."""

    node_id: str
    message: wire.Heartbeat
    received_at: datetime = field(default_factory=utcnow)


BATCH = 500  # ids in one IN (...): under SQLite's bound-parameter limit


_NODES = cast(Table, Node.__table__)
# one statement run for every node of a batch (executemany): no row is read or tracked first
_NODE_FIGURES = (
    update(_NODES)
    .where(_NODES.c.id == bindparam("b_node"))
    .values(
        cpu_cur_pct=bindparam("b_cpu"),
        mem_cur_bytes=bindparam("b_mem"),
        live_stat=bindparam("b_live"),
        last_contact=bindparam("b_at"),
    )
)


async def on_heartbeats(core: Core, beats: list[Beat]) -> None:
    """Record the nodes' and their kernels' figures, every heartbeat in one transaction."""
    async with core.db() as db:
        wanted: dict[tuple[str, uuid.UUID], wire.KernelStats] = {}
        figures = []
        for beat in beats:
            figures.append(
                {
                    "b_node": beat.node_id,
                    "b_cpu": beat.message.cpu_pct,
                    "b_mem": beat.message.mem_used_bytes,
                    "b_live": stats.node_live_stat(beat.message),
                    "b_at": beat.received_at,
                }
            )
            for sample in beat.message.kernels:
                try:
                    wanted[(beat.node_id, uuid.UUID(sample.kernel_id))] = sample
                except ValueError:
                    continue
        ids = [kernel_id for _, kernel_id in wanted]
        for start in range(0, len(ids), BATCH):
            rows = await db.execute(
                select(Kernel, Session.requested_slots)
                .join(Session, Kernel.session_id == Session.id)
                .where(Kernel.id.in_(ids[start : start + BATCH]), Kernel.status != "TERMINATED")
            )
            for kernel, requested in rows:
                found = wanted.get((kernel.node_id, kernel.id))
                if found is None:  # another node's kernel: a node reports only its own
                    continue
                slots = wire.Slots.from_wire(requested)
                kernel.live_stat = stats.kernel_live_stat(found, slots)
                core.activity.sample(kernel.session_id, *stats.utilization(found, slots))
        # the reads above took no write lock; from the first write to the commit, nothing waits
        await db.execute(_NODE_FIGURES, figures)
        await db.commit()
    core.heartbeats.fire()


async def on_images_changed(core: Core, node_id: str, message: wire.ImagesChanged) -> None:
    async with core.db() as db:
        await images_db.sync_node_images(db, node_id, message.images)
        await db.commit()
    core.hub.update_facts(node_id, images=frozenset(info.name for info in message.images))
    core.changed()


async def on_node_lost(core: Core, node_id: str) -> None:
    """Its connection dropped: its sessions stay theirs for one heartbeat timeout from now
    (controlplane/nodewatch.py), time for a restarting node to register again."""
    async with core.db() as db:
        node = await db.get(Node, node_id)
        if node is not None and node.status == "ALIVE":
            node.status = "LOST"
            timeout = core.config.node_heartbeat_timeout
            node.status_info = f"disconnected; its sessions end unless it is back in {timeout:g} s"
            node.last_contact = utcnow()
            await db.commit()
