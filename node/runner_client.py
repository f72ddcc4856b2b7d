"""The node's side of the runner protocol: JSON lines over the kernel's Unix socket.

One connection per request. Requests: `{"op": "ping"}`, `{"op": "query", "code": ...}`,
`{"op": "batch", "clean": ..., "build": ..., "exec": ...}`, and `{"op": "input", "text": ...}`
written on a run's own connection while it waits for input. Events: `pong`, `stdout`/`stderr`,
`waiting-input`, `clean-finished`/`build-finished` and finally `finished`, after which the runner
closes the connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

PING_TIMEOUT = 2.0
# what talking to a runner that is not (or no longer) there raises
RUNNER_GONE = (OSError, trio.BrokenResourceError)
_MAX_LINE = 64 * 1024 * 1024


class RunnerConnection:
    """One open connection to a runner; `send` may be called from several tasks."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._send_lock = trio.Lock()
        self._buffer = bytearray()

    async def send(self, request: dict[str, Any]) -> None:
        line = json.dumps(request, separators=(",", ":")).encode() + b"\n"
        async with self._send_lock:
            await self._stream.send_all(line)

    async def receive(self) -> dict[str, Any] | None:
        """The next event, or None once the runner has closed the connection."""
        while (event := self._next_buffered()) is None:
            if len(self._buffer) > _MAX_LINE:
                raise OSError("the runner sent an over-long line")
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        return event

    def take_buffered(self) -> list[dict[str, Any]]:
        """The events that have already arrived, without waiting for more."""
        events = []
        while (event := self._next_buffered()) is not None:
            events.append(event)
        return events

    def _next_buffered(self) -> dict[str, Any] | None:
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours to interpret; the runner only writes JSON lines
            if isinstance(event, dict):
                return event
        return None


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[RunnerConnection]:
    """Open a connection to the runner at `path`; OSError when nobody listens there.

    Sending and receiving raise one of RUNNER_GONE when the runner goes away mid-run.
    """
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        yield RunnerConnection(stream)


async def ping(path: Path) -> bool:
    """Whether a runner answers at `path` (False when none listens yet or it fails to answer)."""
    with trio.move_on_after(PING_TIMEOUT):
        try:
            async with connect(path) as conn:
                await conn.send({"op": "ping"})
                while (event := await conn.receive()) is not None:
                    if event.get("kind") == "pong":
                        return True
        except RUNNER_GONE:
            return False
    return False
