"""Which nodes are alive: a node is ALIVE while its heartbeats (or any frame) keep coming, LOST
once none came for `node_heartbeat_timeout` seconds, TERMINATED when an admin revoked the join
token it joined with.

A dropped connection alone loses nothing: a node that restarts (its kernels keep running) and
registers again within the timeout keeps its sessions. Past the timeout, its sessions end in
ERROR saying which node was lost and since when, so that what they held is free for others; a
frozen node whose connection is still open is cut off at the same moment. A lost node that
comes back registers again, and `reconcile.on_register` removes the containers of the sessions
that ended meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

import anyio
from sqlalchemy import select

from controlplane import sessions as sessions_db
from controlplane.core import Core
from controlplane.db.models import OCCUPYING_STATUSES, Kernel, Node, Session
from controlplane.db.types import utcnow
from controlplane.errors import NodeUnavailable
from controlplane.events import SessionEvent

log = logging.getLogger(__name__)
CHECKS_PER_TIMEOUT = 4  # a node is found lost at most a quarter of the timeout late


async def watch(core: Core) -> None:
    """Mark nodes LOST when their heartbeats stop; runs until cancelled."""
    timeout = core.config.node_heartbeat_timeout
    while True:
        await anyio.sleep(timeout / CHECKS_PER_TIMEOUT)
        try:
            await check_once(core)
        except Exception:  # the database went away for a moment: the next check retries
            log.exception("checking node heartbeats failed")


async def check_once(core: Core) -> list[str]:
    """Lose every node not heard from within the timeout; returns their ids."""
    timeout = core.config.node_heartbeat_timeout
    deadline = utcnow() - timedelta(seconds=timeout)
    async with core.db() as db:
        stale = list(
            await db.scalars(
                select(Node.id).where(Node.status != "TERMINATED", Node.last_contact < deadline)
            )
        )
    lost = []
    for node_id in stale:
        reason = f"node {node_id} was lost: no heartbeat for {timeout:g} s"
        if await end_node(core, node_id, "LOST", reason, deadline=deadline):
            lost.append(node_id)
    return lost


async def end_node(
    core: Core, node_id: str, status: str, reason: str, *, deadline: datetime | None = None
) -> bool:
    """Set the node's status (LOST or TERMINATED) and end its sessions saying `reason`; close
    its connection if one is still open. With `deadline`, only if the node was not heard from
    since (a heartbeat may have come meanwhile). True if the node was ended now."""
    async with core.db() as db:
        node = await db.get(Node, node_id, with_for_update=True)
        if node is None or (deadline is not None and node.last_contact >= deadline):
            return False
        since = node.last_contact.isoformat(timespec="seconds")
        sessions = list(
            await db.scalars(
                select(Session).where(
                    Session.node_id == node_id, Session.status.in_(OCCUPYING_STATUSES)
                )
            )
        )
        if node.status == status and not sessions:
            return False
        node.status = status
        node.status_info = reason[:256]
        events: list[SessionEvent | None] = []
        for session in sessions:
            for kernel in await db.scalars(select(Kernel).where(Kernel.session_id == session.id)):
                kernel.status = "TERMINATED"  # removed if the node registers again
            # a destroy under way is done: nothing is left here to remove
            to = "TERMINATED" if session.status == "TERMINATING" else "ERROR"
            why = f"{reason} (last heard from at {since})"
            events.append(
                await sessions_db.transition(db, session, to, why, expect=(session.status,))
            )
        await core.publish(db, *events)
    log.warning("%s; %d session(s) ended", reason, len(sessions))
    with contextlib.suppress(NodeUnavailable):  # attached, registered or not
        core.hub.get(node_id).close()
    core.changed()
    return True
