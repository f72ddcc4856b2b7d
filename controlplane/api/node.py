"""The WebSocket nodes dial in on. The handler owns the connection for its whole life."""

from __future__ import annotations

import hmac
import logging

import anyio
from quart import Blueprint, websocket

import wire
from controlplane import jointokens, lifecycle
from controlplane.api._context import core, public
from controlplane.errors import AuthFailed, InvalidAPIParams
from controlplane.nodehub import NodeConnection

bp = Blueprint("node", __name__)
log = logging.getLogger(__name__)
REGISTER_TIMEOUT = 30.0


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
        async with the_core.db() as db:
            await jointokens.admit(db, token)
    await websocket.accept()
    ws = websocket._get_current_object()  # type: ignore[attr-defined]  # usable from other tasks
    with anyio.fail_after(REGISTER_TIMEOUT):
        first = wire.decode(await ws.receive())
    if not isinstance(first, wire.Register):
        raise InvalidAPIParams("a node must send register first")
    try:  # before the hub knows it: a refused node never gets a frame nor replaces the real one
        async with the_core.db() as db:
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
        await ws.close(1008, str(exc)[:120])
        return
    conn = NodeConnection(first.node_id, ws.send)
    replaced = the_core.hub.attach(conn)
    if replaced is not None:  # the same node reconnecting with its own credential
        replaced.close()
    log.info("node %s connected", conn.node_id)
    try:
        with conn.scope:
            await lifecycle.on_register(the_core, first)
            while True:
                message = wire.decode(await ws.receive())
                await _dispatch(conn, message)
    finally:
        # only the live connection's end loses the node, never that of one it replaced
        if the_core.hub.detach(conn):
            with anyio.CancelScope(shield=True):
                await lifecycle.on_node_lost(the_core, conn.node_id)
        log.info("node %s disconnected", conn.node_id)


async def _dispatch(conn: NodeConnection, message: wire.Message) -> None:
    the_core = core()
    match message:
        case wire.Reply():
            conn.deliver_reply(message)
        case wire.RunOutput():
            the_core.hub.deliver_output(message)
        case wire.Heartbeat():
            await lifecycle.on_heartbeat(the_core, conn.node_id, message)
        case wire.KernelExited():
            await lifecycle.on_kernel_exited(the_core, conn.node_id, message)
        case wire.ImagesChanged():
            await lifecycle.on_images_changed(the_core, conn.node_id, message)
        case wire.Register() if message.node_id == conn.node_id:
            await lifecycle.on_register(the_core, message)
        case _:
            log.warning("node %s sent an unexpected %s", conn.node_id, message.type)
