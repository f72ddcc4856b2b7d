"""The web UI's live parts: server-sent events that carry a page's fragment again, rendered,
each time a session event concerns it, or for the statistics each time a node's heartbeat was
recorded (docs/webui.md). No polling: the session events and `Core.heartbeats` drive them."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from quart import Blueprint, Response, render_template, request, stream_with_context
from quart_schema import hide
from sqlalchemy import select

from controlplane.api import ui_auth
from controlplane.api._context import core, requester
from controlplane.api.ui import find, mine, problem_page
from controlplane.api.ui_auth import browser
from controlplane.db.models import Kernel, Node
from controlplane.errors import ControlPlaneError
from controlplane.events import SessionEvent

bp = Blueprint("ui_live", __name__)
bp.register_error_handler(ControlPlaneError, problem_page)
PING_INTERVAL = 15.0
SAMPLES = 60  # points per chart: five minutes at the nodes' default heartbeat of 5 s


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


@dataclass(frozen=True)
class Sample:
    at: datetime  # the heartbeat that carried it
    cpu_pct: float  # of one core
    cpu_capacity: float  # what the session may use: 100 per core
    mem: float  # bytes
    mem_limit: float


def _figure(stat: dict[str, Any], metric: str, key: str) -> float:
    try:
        return float(stat[metric][key])
    except (KeyError, TypeError, ValueError):
        return 0.0


def _area(values: list[float]) -> tuple[str, float]:
    """An SVG polygon's points in a 100 x 40 box: the samples across the whole width, oldest
    at the left, scaled so that the highest reaches 4/5 of the height (small figures stay
    readable); and that highest sample. A lone sample is a flat line."""
    top = max(values, default=0.0)
    scale = 32 / top if top > 0 else 0.0
    shown = values if len(values) != 1 else values * 2
    step = 100 / max(len(shown) - 1, 1)
    line = [f"{i * step:.1f},{40 - v * scale:.1f}" for i, v in enumerate(shown)]
    return " ".join(["0,40", *line, "100,40"]), top


@bp.get("/ui/sessions/<ref>/stats")
@hide
@browser
async def session_stats(ref: str) -> Response:
    """The session's CPU and memory use as small charts (event `stats`), again after each
    node heartbeat that brought a new sample; the charts cover the time the page is open."""
    me = requester()
    session_id = (await find(ref, me)).id
    samples: deque[Sample] = deque(maxlen=SAMPLES)
    cookie = request.cookies.get(ui_auth.COOKIE, "")

    async def charts() -> str:
        async with core().db() as db:
            row = (
                await db.execute(
                    select(Kernel.live_stat, Kernel.status, Node.last_contact)
                    .outerjoin(Node, Node.id == Kernel.node_id)
                    .where(Kernel.session_id == session_id)
                )
            ).first()
        stat, status, at = row if row is not None else (None, None, None)
        running = status == "RUNNING" and stat is not None and at is not None
        if (
            stat is not None
            and at is not None
            and running
            and (not samples or samples[-1].at != at)
        ):
            samples.append(
                Sample(
                    at,
                    _figure(stat, "cpu_util", "current"),
                    _figure(stat, "cpu_util", "capacity"),
                    _figure(stat, "mem", "current"),
                    _figure(stat, "mem", "capacity"),
                )
            )
        cpu, cpu_top = _area([s.cpu_pct for s in samples])
        mem, mem_top = _area([s.mem for s in samples])
        return await render_template(
            "_session_stats.html",
            last=samples[-1] if running and samples else None,
            count=len(samples),
            cpu=cpu,
            cpu_top=cpu_top,
            mem=mem,
            mem_top=mem_top,
        )

    @stream_with_context
    async def stream() -> AsyncIterator[bytes]:
        yield _sse("stats", await charts())
        while True:
            beat = False
            with anyio.move_on_after(PING_INTERVAL):
                await core().heartbeats.wait()
                beat = True
            if ui_auth.store().get(cookie, touch=False) is None:
                return
            yield _sse("stats", await charts()) if beat else b": ping\n\n"

    return _event_stream(stream())


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

    return _event_stream(stream())


def _event_stream(body: AsyncIterator[bytes]) -> Response:
    response = Response(
        body,
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # as long as the page is open
    return response


def _sse(name: str, html: str) -> bytes:
    data = "\n".join(f"data: {line}" for line in html.strip().splitlines() or [""])
    return f"event: {name}\n{data}\n\n".encode()
