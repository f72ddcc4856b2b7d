"""The WebSocket nodes dial in on. The handler owns the connection for its whole life.

Its receive loop serves replies and run output for every kernel of the node, so it never waits
on the database: what a frame changes in the records is queued on Core's writer.
"""

from __future__ import annotations

import functools
import hmac
import logging
from typing import Any

import anyio
from quart import Blueprint, websocket

import wire
from controlplane import jointokens, reconcile
from controlplane.api._context import core, public
from controlplane.core import Core
from controlplane.errors import AuthFailed
from controlplane.nodehub import NodeConnection

bp = Blueprint("node", __name__)
log = logging.getLogger(__name__)
REGISTER_TIMEOUT = 30.0
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY = 1008


@bp.websocket("/node/connect")
@public
async def connect() -> None:
    the_core = core()
    token = websocket.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    # the cluster's shared node token (same-machine nodes), or a join token (other machines)
    joined = not hmac.compare_digest(token.encode(), the_core.config.node_token.encode())
    if joined and not jointokens.looks_like_one(token):
        raise AuthFailed("unknown node token")
    if joined:
        async with the_core.registering, the_core.db() as db:
            await jointokens.admit(db, token)
    await websocket.accept()
    ws = websocket._get_current_object()  # type: ignore[attr-defined]  # usable from other tasks
    first = await _first_frame(ws)
    if first is None:
        return
    try:  # before the hub knows it: a refused node never gets a frame nor replaces the real one
        async with the_core.registering, the_core.db() as db:
            row = await jointokens.admit(db, token) if joined else None
            await jointokens.claim(db, first.node_id, row)
            await db.commit()
    except AuthFailed as exc:  # accepted already: say why in the close frame
        # the audit log comes later; until then this line is the record of the attempt
        log.warning(
            "refused node register: node_id=%s credential=%s peer=%s reason=%s",
            first.node_id,
            "join-token" if joined else jointokens.CLUSTER,
            websocket.remote_addr,
            exc,
        )
        await ws.close(CLOSE_POLICY, str(exc)[:120])
        return
    conn = NodeConnection(first.node_id, ws.send, first.protocol)
    replaced = the_core.hub.attach(conn)
    if replaced is not None:  # the same node reconnecting with its own credential
        replaced.close()
    log.info("node %s connected (protocol %s)", conn.node_id, first.protocol)
    try:
        with conn.scope:
            async with the_core.registering:
                await _register(the_core, conn, first)
            while True:
                frame = await ws.receive()
                try:
                    if isinstance(frame, bytes):  # relay data
                        conn.streams.on_data(frame)
                        continue
                    message = wire.decode(frame)
                except wire.FrameError as exc:
                    await _reject(conn, exc)
                    continue
                _dispatch(the_core, conn, message)
    finally:
        # only the live connection's end loses the node, never that of one it replaced
        if the_core.hub.detach(conn):
            with anyio.CancelScope(shield=True):
                await reconcile.on_node_lost(the_core, conn.node_id)
        log.info("node %s disconnected", conn.node_id)


async def _register(the_core: Core, conn: NodeConnection, message: wire.Register) -> None:
    # set before anything awaits: on_register woke the scheduler, which places by these
    conn.facts = await reconcile.on_register(the_core, message)


async def _first_frame(ws: Any) -> wire.Register | None:
    """The node's Register, or None after closing the connection saying what was wrong."""
    with anyio.fail_after(REGISTER_TIMEOUT):
        text = await ws.receive()
    try:
        first = wire.decode(text)
    except wire.FrameError as exc:
        problem = str(exc)
    else:
        if not isinstance(first, wire.Register):
            problem = f"a node must send register first, not {first.type}"
        elif not wire.protocol_compatible(first.protocol):
            problem = f"node protocol {first.protocol} is not compatible with {wire.PROTOCOL}"
        else:
            return first
    log.warning("refused a node connection: %s", problem)
    await ws.close(CLOSE_PROTOCOL_ERROR, problem[:120])
    return None


async def _reject(conn: NodeConnection, exc: wire.FrameError) -> None:
    """Say what was wrong with a frame and keep the connection: the node may be newer."""
    log.warning("node %s sent a frame we cannot read: %s", conn.node_id, exc)
    if exc.frame_type == "reply" and exc.req_id:
        # fail the request now rather than at its timeout
        conn.deliver_reply(wire.Reply(exc.req_id, ok=False, error=f"unreadable reply: {exc}"))
    await conn.send(wire.FrameRejected(exc.frame_type, str(exc)))


def _dispatch(the_core: Core, conn: NodeConnection, message: wire.Message) -> None:
    """Route one frame without waiting for anything but memory."""
    node_id = conn.node_id
    match message:
        case wire.Reply():
            conn.deliver_reply(message)
        case wire.RunOutput():
            the_core.hub.deliver_output(message)
        case wire.StreamWindow() | wire.StreamClose():
            conn.streams.on_message(message)
        case wire.Heartbeat():
            write = functools.partial(reconcile.on_heartbeats, the_core)
            the_core.writer.batch("heartbeats", write, node_id, reconcile.Beat(node_id, message))
        case wire.KernelExited():
            the_core.writer.submit(
                functools.partial(reconcile.on_kernel_exited, the_core, node_id, message)
            )
        case wire.ImagesChanged():
            job = functools.partial(reconcile.on_images_changed, the_core, node_id, message)
            the_core.writer.submit(job, key=("images", node_id))
        case wire.Register() if message.node_id == node_id:
            the_core.writer.submit(functools.partial(_register, the_core, conn, message))
        case wire.FrameRejected():
            what, why = message.frame_type, message.error
            log.warning("node %s could not read our %s frame: %s", node_id, what, why)
        case _:
            log.warning("node %s sent an unexpected %s frame", node_id, message.type)
