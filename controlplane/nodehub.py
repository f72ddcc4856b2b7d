"""Connected nodes: one WebSocket each, requests matched to replies, run output routed by run id.

A node connection is owned by its WebSocket handler; the hub only keeps a reference while it is
open. Requests wait for their Reply under a timeout; a dropped connection fails them at once.
Only `controlplane.nodecalls` sends requests; everything else asks it.

The hub is also the scheduler's node set: what placement needs of each registered node (its
scaling group, capacity and images, `NodeFacts`) rides on its live connection, set when its
registration is recorded and changed by the writes that change it in the database (images
reported, the node moved to another scaling group); a node that disconnects or is ended leaves
the set with its connection. So a scheduling pass reads no node rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import anyio

import wire
from controlplane.errors import NodeDisconnected, NodeUnavailable
from controlplane.runs import RunBuffer

SendFrame = Callable[[str | bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the scheduler places by, as recorded in the node's row and image rows."""

    scaling_group: str
    slots: wire.Slots  # capacity offered to sessions
    images: frozenset[str]  # image names


@dataclass
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: wire.Reply | None = None


class NodeConnection:
    def __init__(self, node_id: str, send_frame: SendFrame, protocol: str = wire.PROTOCOL) -> None:
        self.node_id = node_id
        self.protocol = tuple(int(p) for p in protocol.split(".")[:2])  # what the node speaks
        self._send_frame = send_frame
        self._lock = anyio.Lock()
        self._pending: dict[str, _Pending] = {}
        self.closed = False
        # set once its Register is recorded (its slots, images and kernels are in the database):
        # until then the node is attached (it can be sent requests) but not counted as alive
        self.facts: NodeFacts | None = None
        # the connection's handler serves inside this scope: closing it ends the handler
        self.scope = anyio.CancelScope()
        self.streams = wire.RelayStreams(self.send_frame)  # relayed byte streams (OpenStream)

    @property
    def registered(self) -> bool:
        return self.facts is not None

    async def send(self, message: wire.Message) -> None:
        await self.send_frame(wire.encode(message))

    async def send_frame(self, frame: str | bytes) -> None:
        """One WebSocket frame: a message (text) or relay data (binary)."""
        if self.closed:
            raise NodeUnavailable(f"node {self.node_id} is not connected")
        async with self._lock:
            try:
                await self._send_frame(frame)
            except Exception as exc:  # the socket went away under us
                raise NodeUnavailable(f"node {self.node_id} is not connected") from exc

    async def request(self, message: wire.Request, wait: float) -> wire.Reply:
        """Send `message` under a fresh req_id and wait for its Reply."""
        req_id = uuid.uuid4().hex
        pending = self._pending[req_id] = _Pending()
        try:
            await self.send(replace(message, req_id=req_id))
            with anyio.fail_after(wait):
                await pending.done.wait()
        except TimeoutError as exc:
            raise NodeUnavailable(f"node {self.node_id} did not answer in {wait:.0f} s") from exc
        finally:
            self._pending.pop(req_id, None)
        if pending.reply is None:
            raise NodeDisconnected(f"node {self.node_id} disconnected")
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
        self.streams.close_all(f"node {self.node_id} disconnected")
        for pending in self._pending.values():
            pending.done.set()  # reply stays None: the requester sees NodeUnavailable


class NodeHub:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeConnection] = {}
        self._runs: dict[str, RunBuffer] = {}

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
            for buffer in list(self._runs.values()):
                if buffer.node_id == conn.node_id:
                    buffer.lose("the node connection was lost")
        conn.close()
        return live

    def get(self, node_id: str) -> NodeConnection:
        conn = self._nodes.get(node_id)
        if conn is None:
            raise NodeUnavailable(f"node {node_id} is not connected")
        return conn

    def connected(self) -> set[str]:
        """The nodes whose registration is recorded; /health counts these, so that a caller who
        saw a node alive finds its images and slots too."""
        return {node_id for node_id, conn in self._nodes.items() if conn.registered}

    def placeable(self) -> dict[str, NodeFacts]:
        """The registered nodes that may take sessions now (a node being cut off is not)."""
        return {
            node_id: conn.facts
            for node_id, conn in self._nodes.items()
            if conn.facts is not None and not conn.closed
        }

    def update_facts(
        self, node_id: str, *, images: frozenset[str] | None = None, scaling_group: str = ""
    ) -> None:
        """A recorded change of a registered node's images or scaling group."""
        conn = self._nodes.get(node_id)
        if conn is None or conn.facts is None:
            return  # not registered: its registration reads the records
        if images is not None:
            conn.facts = replace(conn.facts, images=images)
        if scaling_group:
            conn.facts = replace(conn.facts, scaling_group=scaling_group)

    # --- run output routing ---

    def open_run(self, buffer: RunBuffer) -> None:
        self._runs[buffer.run_id] = buffer

    def close_run(self, run_id: str) -> None:
        buffer = self._runs.pop(run_id, None)
        if buffer is not None:
            buffer.close()

    def run_buffers(self) -> list[RunBuffer]:
        """The runs whose output is routed now (what the control plane holds in memory)."""
        return list(self._runs.values())

    def deliver_output(self, output: wire.RunOutput) -> None:
        """Never blocks: the node's receive loop calls this for every output of every run."""
        buffer = self._runs.get(output.run_id)
        if buffer is not None:  # else nobody listens any more (the run was closed)
            buffer.put(output)
