"""GET /events/session: a session's lifecycle as server-sent events (docs/backendai-api.md §6.2).

Each state change becomes Backend.AI's event names: session_* for the session and kernel_* for
its (single) container, with `{"reason", "sessionName", "ownerAccessKey", "sessionId",
"exitCode"}` (plus `kernelId`, `clusterRole`, `clusterIdx` for kernel events).

A pending session's reason (why it cannot be placed yet) is news too: `session_enqueued` comes
again, with the new `reason`, each time it changes, and a stream that opens on a pending session
starts with it. The stream starts with a `: listening` comment once it is subscribed, so a client
knows from then on that it misses nothing (`shipyard run` waits for it before creating).
Notices change no status: Shipyard's `session_idle_warning` (the idle checks' warning, its
`reason` saying when and why the session will end) comes before the idle ending.

When the stream watches one session (by `sessionId` or a name), it ends with `server_close`
once that session is gone for good: TERMINATED or CANCELLED (a session that is already gone
when the stream opens gets its final event and `server_close` at once). Without `server_close`
the official client reconnects forever. An ERROR session still holds its record until it is
destroyed, so its stream stays open until then. Watching every session (`sessionName=*`, the
default) never ends on its own. A `: ping` comment goes out every 15 s of quiet.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from quart import Blueprint, Response
from sqlalchemy import select

from controlplane import keypairs, tenancy
from controlplane import sessions as sessions_db
from controlplane.api._context import core, requester
from controlplane.api._models import EventsQuery
from controlplane.api._typed import ServerSentEvents, documented, query
from controlplane.core import Core
from controlplane.db.models import Kernel, Session
from controlplane.errors import InsufficientPrivilege
from controlplane.events import SessionEvent

bp = Blueprint("events", __name__)
PING_INTERVAL = 15.0
SUBSCRIBER_BUFFER = 1000
GONE = ("TERMINATED", "CANCELLED")
# our status -> Backend.AI's events, kernel ones first as its manager sends them
_EVENTS: dict[str, tuple[str, ...]] = {
    "PENDING": ("session_enqueued",),
    "SCHEDULED": ("session_scheduled",),
    "PREPARING": ("kernel_preparing", "kernel_creating"),
    "RUNNING": ("kernel_started", "session_started"),
    "TERMINATING": ("kernel_terminating", "session_terminating"),
    "TERMINATED": ("kernel_terminated", "session_terminated"),
    "CANCELLED": ("kernel_cancelled", "session_cancelled"),
    "ERROR": ("kernel_terminated", "session_failure"),
}


@bp.get("/events/session")
@documented({200: ServerSentEvents})
@query(EventsQuery)
async def session_events(args: EventsQuery) -> Response:
    """Session lifecycle events as server-sent events (text/event-stream)."""
    scope, owner, group = args.scope, args.owner_access_key, args.group
    name = args.session_name
    me = requester()
    if owner and owner != me.access_key:
        async with core().db() as db:
            other = await keypairs.get_keypair(db, owner)
        if other is None or not tenancy.can_see_owner(me, other.user.domain_name, owner):
            raise InsufficientPrivilege("only admins may watch the sessions of another keypair")
    target: Session | None = None
    ref = args.session_id or (name if name != "*" else None)
    if ref is not None:
        async with core().db() as db:
            target = await sessions_db.find(db, me, ref, owner_access_key=owner)
    response = Response(
        _stream(core(), owner or me.access_key, target, scope, group),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # the stream lasts as long as the client listens
    return response


async def _stream(
    the_core: Core, access_key: str, target: Session | None, scope: str, group: str
) -> AsyncIterator[bytes]:
    async with the_core.events.subscribe(SUBSCRIBER_BUFFER) as events:
        yield b": listening\n\n"
        last: dict[uuid.UUID, tuple[str, str | None]] = {}
        if target is not None:
            async with the_core.db() as db:
                current = await db.get(Session, target.id)
                assert current is not None
            event = SessionEvent(
                current.id,
                current.name,
                current.access_key,
                current.status,
                current.status_info,
                (current.status_data or {}).get("exit_code"),
            )
            if current.status in GONE:
                for frame in await _frames(the_core, event, scope):
                    yield frame
                yield _sse("server_close", {})
                return
            if current.status == "PENDING":  # say why it waits
                for frame in await _frames(the_core, event, scope):
                    yield frame
            last[current.id] = (current.status, current.status_info)
        while True:
            received: SessionEvent | None = None
            with anyio.move_on_after(PING_INTERVAL):
                received = await events.receive()
            if received is None:
                yield b": ping\n\n"
                continue
            event = received
            if target is not None and event.session_id != target.id:
                continue
            if target is None and (
                event.access_key != access_key or not await _in_group(the_core, event, group)
            ):
                continue
            seen = last.get(event.session_id)
            if event.notice is None and (
                seen == (event.status, event.reason)
                or (seen is not None and seen[0] == event.status != "PENDING")
            ):
                continue  # only a pending session's new reason is news, and notices
            last[event.session_id] = (event.status, event.reason)
            for frame in await _frames(the_core, event, scope):
                yield frame
            if target is not None and event.status in GONE:
                yield _sse("server_close", {})
                return


async def _in_group(the_core: Core, event: SessionEvent, group: str) -> bool:
    if group == "*":
        return True
    async with the_core.db() as db:
        session = await db.get(Session, event.session_id)
        if session is None:
            return False
        project = (await keypairs.projects_by_id(db)).get(session.project_id)
    return project is not None and project.name == group


async def _frames(the_core: Core, event: SessionEvent, scope: str) -> list[bytes]:
    names = [f"session_{event.notice}"] if event.notice else list(_EVENTS.get(event.status, ()))
    base: dict[str, Any] = {
        "reason": event.reason,
        "sessionName": event.session_name,
        "ownerAccessKey": event.access_key,
        "sessionId": str(event.session_id),
        "exitCode": event.exit_code,
    }
    async with the_core.db() as db:
        kernel = await db.scalar(select(Kernel).where(Kernel.session_id == event.session_id))
        if event.status == "TERMINATED":
            session = await db.get(Session, event.session_id)
            if session is not None and session.result in ("SUCCESS", "FAILURE"):
                # a batch session's outcome comes before its termination
                names.insert(-1, f"session_{session.result.lower()}")
                code = (session.status_data or {}).get("exit_code")
                base["exitCode"] = code if isinstance(code, int) else base["exitCode"]
    frames = []
    for name in names:
        kind = name.split("_", 1)[0]
        if scope != "*" and kind != scope:
            continue
        data = dict(base)
        if kind == "kernel":
            if kernel is None:
                continue  # no container was ever made (cancelled while pending)
            data.update(kernelId=str(kernel.id), clusterRole=kernel.cluster_role, clusterIdx=0)
        frames.append(_sse(name, data))
    return frames


def _sse(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
