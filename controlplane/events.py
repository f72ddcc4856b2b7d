"""In-process publish/subscribe of session state changes.

Handlers that wait for a session to reach a state (POST /session), and the event stream API,
subscribe here; whoever commits a transition publishes it. Subscribers that fall behind lose
events rather than blocking the publisher.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


@dataclass(frozen=True)
class SessionEvent:
    session_id: uuid.UUID
    session_name: str
    access_key: str
    status: str
    reason: str
    exit_code: int | None = None
    # set for news about a session that changes no status ("idle_warning"); the event stream
    # sends it as `session_<notice>`
    notice: str | None = None
    node_id: str | None = None  # set when the session was placed on this node (SCHEDULED)


class SessionEvents:
    def __init__(self) -> None:
        self._subscribers: set[MemoryObjectSendStream[SessionEvent]] = set()

    def publish(self, event: SessionEvent) -> None:
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                pass  # a slow subscriber misses events; it re-reads state from the database
            except anyio.BrokenResourceError:
                self._subscribers.discard(stream)

    @asynccontextmanager
    async def subscribe(
        self, buffer: float = math.inf
    ) -> AsyncIterator[MemoryObjectReceiveStream[SessionEvent]]:
        send, receive = anyio.create_memory_object_stream[SessionEvent](buffer)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()


class Beacon:
    """Wakes everyone waiting for the next time something happened (`fire`); nothing is
    queued, so a waiter that comes late simply waits for the next one. The node heartbeats
    fire one (`Core.heartbeats`): the web UI's live statistics follow it instead of polling."""

    def __init__(self) -> None:
        self._next: anyio.Event | None = None  # made by the first waiter, inside the event loop

    def fire(self) -> None:
        if self._next is not None:
            self._next.set()
            self._next = None

    async def wait(self) -> None:
        if self._next is None:
            self._next = anyio.Event()
        await self._next.wait()
