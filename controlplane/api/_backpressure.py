"""Request bodies read with back-pressure.

Quart's ASGI connection takes every body message the server hands it and appends it to the
request's Body however slowly the view consumes it, so a tus PATCH whose view writes each chunk
to disk in a worker thread could sit in memory whole (and once more as the copy `__anext__`
returns): the control plane grew by about two PATCH bodies. Here the connection waits, before it
takes the next message, while more than `LIMIT` bytes are unread; Hypercorn's queue to the app
is bounded (`max_app_queue_size` messages of at most 64 KiB), so Hypercorn stops reading the
socket and TCP slows the client down. A view that awaits the whole body (`get_data`, JSON, the
signature check) lifts the limit: it asked for all of it (MAX_CONTENT_LENGTH bounds that).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from hypercorn.typing import ASGIReceiveCallable
from quart import Request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers.request import Body

LIMIT = 256 * 1024  # unread bytes held at most (plus one message)


class BoundedBody(Body):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None):
        super().__init__(expected_content_length, max_content_length)
        self._whole = False
        self._taken = asyncio.Event()

    async def room(self) -> None:
        """Return once the body may take another message."""
        while not self._whole and len(self._data) >= LIMIT and not self._complete.is_set():
            self._taken.clear()
            await self._taken.wait()

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        finally:
            self._taken.set()

    def __await__(self) -> Generator[Any, None, Any]:
        self._whole = True
        self._taken.set()
        return super().__await__()


class BoundedRequest(Request):
    body_class = BoundedBody


class BoundedConnection(ASGIHTTPConnection):
    async def handle_messages(self, request: Request, receive: ASGIReceiveCallable) -> None:
        body = request.body
        while True:
            if isinstance(body, BoundedBody):
                await body.room()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                return
