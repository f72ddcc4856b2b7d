"""The web UI's live parts: server-sent events that carry a page's fragment again, rendered,
each time a session event concerns it (docs/webui.md). No polling: the session events the API
publishes drive them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from quart import Blueprint, Response, render_template, request, stream_with_context
from quart_schema import hide

from controlplane.api import ui_auth
from controlplane.api._context import core, requester
from controlplane.api.ui import find, mine, problem_page
from controlplane.api.ui_auth import browser
from controlplane.errors import ControlPlaneError
from controlplane.events import SessionEvent

bp = Blueprint("ui_live", __name__)
bp.register_error_handler(ControlPlaneError, problem_page)
PING_INTERVAL = 15.0


@bp.get("/ui/sessions/events")
@hide
@browser
async def session_list_events() -> Response:
    """The caller's session list again (event `sessions`) each time one of them changes."""
    me = requester()

    async def rows() -> str:
        return await render_template("_session_rows.html", sessions=await mine(me))

    return _live("sessions", rows, lambda event: event.access_key == me.access_key)


@bp.get("/ui/sessions/<ref>/events")
@hide
@browser
async def session_events(ref: str) -> Response:
    """The session's status and history again (event `status`) each time it changes."""
    me = requester()
    session_id = (await find(ref, me)).id

    async def status() -> str:
        session = await find(str(session_id), me)
        return await render_template("_session_status.html", session=session)

    return _live("status", status, lambda event: event.session_id == session_id)


def _live(
    name: str, render: Callable[[], Awaitable[str]], wanted: Callable[[SessionEvent], bool]
) -> Response:
    """A text/event-stream that sends `render()` as event `name` once subscribed (so nothing
    between the page and the stream is missed) and again after each wanted event."""

    cookie = request.cookies.get(ui_auth.COOKIE, "")

    @stream_with_context
    async def stream() -> AsyncIterator[bytes]:
        async with core().events.subscribe(1000) as events:
            yield _sse(name, await render())
            while True:
                received: SessionEvent | None = None
                with anyio.move_on_after(PING_INTERVAL):
                    received = await events.receive()
                if ui_auth.store().get(cookie, touch=False) is None:
                    return  # signed out (or idle too long): this page shows nothing more
                if received is None:
                    yield b": ping\n\n"
                elif wanted(received):
                    yield _sse(name, await render())

    response = Response(
        stream(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # as long as the page is open
    return response


def _sse(name: str, html: str) -> bytes:
    data = "\n".join(f"data: {line}" for line in html.strip().splitlines() or [""])
    return f"event: {name}\n{data}\n\n".encode()
