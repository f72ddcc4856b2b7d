"""Connected nodes: one WebSocket each, requests matched to replies, run output routed by run id.

A node connection is owned by its WebSocket handler; the hub only keeps a reference while it is
open. Requests wait for their Reply under a timeout; a dropped connection fails them at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectSendStream

import wire
from controlplane.errors import NodeUnavailable

SendText = Callable[[str], Awaitable[None]]


@dataclass
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: wire.Reply | None = None


class NodeConnection:
    def __init__(self, node_id: str, send_text: SendText) -> None:
        self.node_id = node_id
        self._send_text = send_text
        self._lock = anyio.Lock()
        self._pending: dict[str, _Pending] = {}
        self.closed = False
        # the connection's handler serves inside this scope: closing it ends the handler
        self.scope = anyio.CancelScope()

    async def send(self, message: wire.Message) -> None:
        if self.closed:
            raise NodeUnavailable(f"node {self.node_id} is not connected")
        async with self._lock:
            try:
                await self._send_text(wire.encode(message))
            except Exception as exc:  # the socket went away under us
                raise NodeUnavailable(f"node {self.node_id} is not connected") from exc

    async def request(self, make: Callable[[str], wire.Message], wait: float) -> wire.Reply:
        """Send the message built by `make(req_id)` and wait for its Reply."""
        req_id = uuid.uuid4().hex
        pending = self._pending[req_id] = _Pending()
        try:
            await self.send(make(req_id))
            with anyio.fail_after(wait):
                await pending.done.wait()
        except TimeoutError as exc:
            raise NodeUnavailable(f"node {self.node_id} did not answer in {wait:.0f} s") from exc
        finally:
            self._pending.pop(req_id, None)
        if pending.reply is None:
            raise NodeUnavailable(f"node {self.node_id} disconnected")
        return pending.reply

    def deliver_reply(self, reply: wire.Reply) -> None:
        pending = self._pending.get(reply.req_id)
        if pending is not None:
            pending.reply = reply
            pending.done.set()

    def close(self) -> None:
        """Fail pending requests and end the connection (replaced by a new one, or revoked)."""
        self.closed = True
        self.scope.cancel()
        for pending in self._pending.values():
            pending.done.set()  # reply stays None: the requester sees NodeUnavailable


class NodeHub:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeConnection] = {}
        self._runs: dict[str, MemoryObjectSendStream[wire.RunOutput]] = {}

    def attach(self, conn: NodeConnection) -> NodeConnection | None:
        """Register a connection; returns the one it replaces (to be closed), if any."""
        old = self._nodes.get(conn.node_id)
        self._nodes[conn.node_id] = conn
        return old

    def detach(self, conn: NodeConnection) -> bool:
        """Forget a connection that ended; True if it was its node's live one (compared by
        identity: a connection another one replaced does not take the node with it)."""
        live = self._nodes.get(conn.node_id) is conn
        if live:
            del self._nodes[conn.node_id]
        conn.close()
        return live

    def get(self, node_id: str) -> NodeConnection:
        conn = self._nodes.get(node_id)
        if conn is None:
            raise NodeUnavailable(f"node {node_id} is not connected")
        return conn

    def connected(self) -> set[str]:
        return set(self._nodes)

    # --- run output routing ---

    def open_run(self, run_id: str, send: MemoryObjectSendStream[wire.RunOutput]) -> None:
        self._runs[run_id] = send

    def close_run(self, run_id: str) -> None:
        send = self._runs.pop(run_id, None)
        if send is not None:
            send.close()

    def deliver_output(self, output: wire.RunOutput) -> None:
        send = self._runs.get(output.run_id)
        if send is None:
            return  # nobody listens any more (client went away)
        try:
            send.send_nowait(output)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.close_run(output.run_id)
