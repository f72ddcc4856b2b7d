"""Creating a session while saying why it waits: the server holds `POST /session` until the
session runs (or `max_wait` passes), and meanwhile its events stream tells each new reason the
scheduler gives for not placing it yet. The reason is one line on stderr, rewritten in place on
a terminal and a new line per change otherwise."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import trio

from client.sdk import Client


async def create_showing_why(
    api: Client, image: str, *, name: str, max_wait: float, **options: Any
) -> dict[str, Any]:
    """`api.create_session(...)`, writing the pending reasons of session `name` to stderr."""
    line = _StatusLine()
    try:
        async with (
            api.session_events({"scope": "session"}) as events,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_show_reasons, events, name, line)
            created = await api.create_session(image, name=name, max_wait=max_wait, **options)
            nursery.cancel_scope.cancel()
    finally:
        line.end()
    return created


async def _show_reasons(
    events: AsyncIterator[tuple[str, Any]], name: str, line: _StatusLine
) -> None:
    first = True
    async for event, data in events:
        if event != "session_enqueued" or not isinstance(data, dict):
            continue
        if data.get("sessionName") != name:
            continue
        if first:  # the creation itself ("enqueued"), not a reason to wait
            first = False
            continue
        line.show(f"shipyard: session {name} is pending: {data.get('reason')}")


class _StatusLine:
    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._open = False

    def show(self, text: str) -> None:
        if self._tty:
            sys.stderr.write(f"\r\x1b[K{text}")
            self._open = True
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self._open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._open = False
