"""The node's side of the runner protocol: JSON lines over a Unix socket the node listens on.

Each kernel has its own listening socket, owned by the node in a directory the container sees
read-only; the runner dials it (see node/runner/runner.py). The node therefore never connects to a
path: what it talks to is whoever dialled that kernel's socket, and only that kernel can.

One connection per request. Requests: `{"op": "ping"}`, `{"op": "query", "code": ...}`,
`{"op": "batch", "clean": ..., "build": ..., "exec": ...}`, and `{"op": "input", "text": ...}`
written on a run's own connection while it waits for input. Events: `pong`, `stdout`/`stderr`,
`waiting-input`, `clean-finished`/`build-finished` and finally `finished`, after which the runner
closes the connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

BACKLOG = 4  # the runner keeps one idle connection; more come only from code in the kernel
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


class RunnerSocket:
    """The node's listening socket for one kernel: each accepted connection carries one request."""

    def __init__(self, path: Path, uid: int) -> None:
        """Listen at `path` (replacing a socket left by an earlier node process); only `uid`
        (the kernel's user) and root may connect. Blocking, but only a few local syscalls."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chown(path, uid, uid)
            os.chmod(path, 0o600)
            sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
        self.path = path
        self._listener = trio.socket.from_stdlib_socket(sock)
        self._accepting = trio.Lock()  # fair: requests get the runner in the order they asked

    async def accept(self) -> trio.SocketStream:
        """The next connection the runner dialled; waits while it is busy with another run."""
        async with self._accepting:
            sock, _ = await self._listener.accept()
        return trio.SocketStream(sock)

    def close(self) -> None:
        """Stop listening; a runner waiting on this socket notices and dials its successor."""
        self._listener.close()


@asynccontextmanager
async def connect(runner: RunnerSocket) -> AsyncIterator[RunnerConnection]:
    """The next connection from the kernel's runner.

    Sending and receiving raise one of RUNNER_GONE when the runner goes away mid-run.
    """
    stream = await runner.accept()
    async with stream:
        yield RunnerConnection(stream)


async def ping(runner: RunnerSocket) -> bool:
    """Whether the runner answers a ping; waits until it has dialled in (callers bound the wait)."""
    try:
        async with connect(runner) as conn:
            await conn.send({"op": "ping"})
            while (event := await conn.receive()) is not None:
                if event.get("kind") == "pong":
                    return True
    except RUNNER_GONE:
        pass
    return False
