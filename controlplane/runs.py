"""A run's output on its way from the node to whoever reads it, in bounded memory.

The node's receive loop must never wait on one run's reader (it serves every kernel of that
node), so a run whose reader falls behind keeps at most `MAX_BUFFERED` bytes of stdout/stderr;
beyond that its output is dropped and the reader sees, where the gap is, one line saying how
much. Events that end a chunk (waiting-input, *-finished) are always kept.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import anyio

import wire

MAX_BUFFERED = 4 * 2**20


def dropped_marker(count: int) -> str:
    return f"\n[shipyard: {count} bytes of output dropped]\n"


class RunBuffer:
    def __init__(self, run_id: str, node_id: str, limit: int = MAX_BUFFERED) -> None:
        self.run_id = run_id
        self.node_id = node_id
        self.limit = limit
        self._items: deque[wire.RunOutput] = deque()
        self._bytes = 0  # of stdout/stderr data held
        self._dropped = 0  # bytes dropped since the last item that was kept
        self._ready = anyio.Event()
        self._closed = False

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def put(self, output: wire.RunOutput) -> None:
        if self._closed:
            return
        if output.kind in ("stdout", "stderr"):
            if self._dropped and self._bytes < self.limit:
                self._flush_marker()  # the reader made room: mark the gap before what follows
            data = output.data.encode()
            room = max(self.limit - self._bytes, 0)
            if len(data) > room:
                kept = data[:room].decode(errors="ignore")
                self._dropped += len(data) - len(kept.encode())
                if not kept:
                    return
                output = wire.RunOutput(output.run_id, output.kind, data=kept)
            self._bytes += len(output.data.encode())
        elif self._dropped:
            self._flush_marker()
        self._items.append(output)
        self._ready.set()

    def _flush_marker(self) -> None:
        marker = dropped_marker(self._dropped)
        self._dropped = 0
        self._items.append(wire.RunOutput(self.run_id, "stderr", data=marker))
        self._bytes += len(marker)

    def lose(self, why: str) -> None:
        """The node went away: end the run for its reader."""
        self.put(wire.RunOutput(self.run_id, "stderr", data=f"\nshipyard: {why}\n"))
        self.put(wire.RunOutput(self.run_id, "finished", exit_code=130))

    def close(self) -> None:
        """Forget everything held; a waiting reader sees the run as lost."""
        self._closed = True
        self._items.clear()
        self._bytes = self._dropped = 0
        self._ready.set()

    def take_nowait(self) -> wire.RunOutput | None:
        """The next output, or None when nothing is there right now."""
        if not self._items and self._dropped:
            self._flush_marker()  # the reader caught up with a gap: say so now
        if not self._items:
            if self._closed:
                return _lost(self.run_id)
            self._ready = anyio.Event()
            return None
        item = self._items.popleft()
        if item.kind in ("stdout", "stderr"):
            self._bytes -= len(item.data.encode())
        return item

    async def take(self) -> wire.RunOutput:
        while (item := self.take_nowait()) is None:
            await self._ready.wait()
        return item


def _lost(run_id: str) -> wire.RunOutput:
    return wire.RunOutput(run_id, "finished", exit_code=130, data="the run was closed")


@dataclass
class Run:
    """One execution in a session's main kernel, as the control plane tracks it."""

    run_id: str  # unique on the server: the node's output is routed by it
    session_id: uuid.UUID
    access_key: str  # the keypair that owns the session (only it may read or feed the run)
    node_id: str
    kernel_id: str
    output: RunBuffer
    client_run_id: str = ""  # the id the client knows it by ("" : run_id)
    finished: bool = False
    end_reason: str = ""  # why it finished, when the program did not end on its own
    last_used: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.client_run_id = self.client_run_id or self.run_id
