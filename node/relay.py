"""OpenStream: join a stream of the control-plane link to a connection the kernel's runner dialled.

The node knows nothing about apps: it takes the next connection from the kernel's relay socket,
hands the runner the request (a port on the container's loopback, or a terminal), waits for its
one-line answer and then copies bytes both ways, with the link's flow control
(wire/_relay.py), until either side closes. The runner's side is in node/runner/shipyard_relay.py.
A stream lives in the link connection's nursery, so it ends when the link does, and it ends
when the kernel does, because its runner's connections go with the container.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import trio

from node.errors import NodeError
from node.kernels import Kernels
from node.runner_client import RUNNER_GONE
from wire import OpenStream, RelayStream, RelayStreams, StreamClosed, StreamOpened

log = logging.getLogger("shipyard.node.relay")

DIAL_TIMEOUT = 10.0  # the runner keeps a connection waiting; one that never dials predates relays
ANSWER_TIMEOUT = 150.0  # the runner may start the app first (its own limit is 120 s)
CHUNK = 256 * 1024
_MAX_ANSWER = 65536


def runner_request(req: OpenStream) -> dict[str, Any]:
    if req.target == "pty":
        return {"op": "pty", "rows": req.rows, "cols": req.cols, "command": req.command}
    return {"op": "connect", "port": req.port, "app": req.app, "env": req.env}


async def open_stream(
    kernels: Kernels, req: OpenStream, streams: RelayStreams, nursery: trio.Nursery
) -> StreamOpened:
    """Connect stream `req.stream_id` to the kernel; NodeError saying why it cannot be."""
    kernel = await kernels.get(req.kernel_id)
    relay_socket = kernels.relay_socket(kernel)
    conn = None
    with trio.move_on_after(DIAL_TIMEOUT):
        conn = await relay_socket.accept()
    if conn is None:
        raise NodeError(
            f"kernel {req.kernel_id} does not relay streams (its runner predates them, or it is"
            " not running): start a new session"
        )
    try:
        await conn.send_all(json.dumps(runner_request(req)).encode() + b"\n")
        with trio.fail_after(ANSWER_TIMEOUT):
            answer, leftover = await _read_answer(conn)
        if answer.get("kind") != "ready":
            raise NodeError(f"kernel {req.kernel_id}: {answer.get('message') or answer}")
        relay = streams.open(req.stream_id)
    except trio.TooSlowError:
        await conn.aclose()
        raise NodeError(f"kernel {req.kernel_id}: no answer in {ANSWER_TIMEOUT:.0f} s") from None
    except (*RUNNER_GONE, ValueError) as exc:
        await conn.aclose()
        raise NodeError(f"kernel {req.kernel_id}: the runner went away: {exc}") from exc
    except BaseException:
        await conn.aclose()
        raise
    nursery.start_soon(_copy, conn, relay, leftover)
    return StreamOpened(req.stream_id)


async def _read_answer(conn: trio.SocketStream) -> tuple[dict[str, Any], bytes]:
    """The runner's answer line, and whatever of the stream came in behind it."""
    buffer = b""
    while b"\n" not in buffer:
        if len(buffer) > _MAX_ANSWER:
            raise ValueError("over-long answer")
        data = await conn.receive_some(4096)
        if not data:
            raise ValueError("it closed the connection without an answer")
        buffer += data
    line, _, rest = buffer.partition(b"\n")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    return answer, rest


async def _copy(conn: trio.SocketStream, relay: RelayStream, leftover: bytes) -> None:
    error = ""
    try:
        async with conn, trio.open_nursery() as nursery:

            async def to_link() -> None:
                if leftover:
                    await relay.send(leftover)
                while data := await conn.receive_some(CHUNK):
                    await relay.send(data)
                nursery.cancel_scope.cancel()

            async def to_kernel() -> None:
                while data := await relay.receive():
                    await conn.send_all(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(to_link)
            nursery.start_soon(to_kernel)
    except* (*RUNNER_GONE, StreamClosed) as group:
        error = str(group.exceptions[0])
        log.debug("stream %s ended: %s", relay.stream_id, error)
    finally:
        await relay.aclose(error)
