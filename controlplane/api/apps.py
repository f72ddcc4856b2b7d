"""A session's apps: the list, the TCP proxy and the terminal (docs/backendai-api.md §10).

Both WebSocket routes ride a relayed stream (controlplane/nodecalls.open_stream): control plane
⇄ node link ⇄ the kernel's runner ⇄ the app's port on the container's loopback, or a new
terminal. Nothing listens on a host port and the container needs no network. A session is found
among the caller's own (an admin may name another owner), so anyone else gets 404.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
from quart import Blueprint, websocket
from sqlalchemy import select

import wire
from controlplane import apps, nodecalls, sshkeys
from controlplane import sessions as sessions_db
from controlplane.api._app_models import AppList, AppView, ProxyQuery, PtyQuery
from controlplane.api._context import core, requester
from controlplane.api._session_models import OwnerQuery, ServicePortView
from controlplane.api._typed import query, read_query, returns
from controlplane.db.models import Kernel, Session
from controlplane.errors import (
    InvalidAPIParams,
    NodeUnavailable,
    ObjectNotFound,
    SessionNotRunning,
)
from controlplane.terminal import Exited, Output, TerminalReader, input_frame, resize_frame

bp = Blueprint("apps", __name__)
CLOSE_GOING_AWAY = 1001  # the app closed the connection (as Backend.AI's manager says it)
CLOSE_TRY_AGAIN = 1013  # the app could not be reached
CLOSE_ERROR = 1011


async def _find(ref: str, owner_access_key: str | None) -> Session:
    async with core().db() as db:
        return await sessions_db.find(db, requester(), ref, owner_access_key=owner_access_key)


async def main_kernel(session: Session) -> tuple[str, str]:
    """(node id, kernel id) of a running session; SessionNotRunning otherwise."""
    async with core().db() as db:
        kernel = await db.scalar(
            select(Kernel).where(Kernel.session_id == session.id, Kernel.status == "RUNNING")
        )
    if session.status != "RUNNING" or kernel is None or kernel.node_id is None:
        raise SessionNotRunning(f"Session {session.name} is {session.status}")
    return kernel.node_id, str(kernel.id)


@bp.get("/stream/session/<ref>/apps")
@returns(AppList)
@query(OwnerQuery)
async def list_apps(ref: str, args: OwnerQuery) -> AppList:
    """The session's apps (service ports); [] while it is not running."""
    session = await _find(ref, args.owner_access_key)
    async with core().db() as db:
        found = await apps.of_session(db, session)
    token = apps.token(core().secrets, session)

    def url(app: apps.ServicePort) -> str | None:
        if app.protocol not in ("http", "preopen"):
            return None
        return f"http://{{host}}:{{port}}{apps.base_path(session, app.name)}?token={token}"

    return AppList(
        [AppView(**ServicePortView.of(app).model_dump(), url_template=url(app)) for app in found]
    )


@bp.websocket("/stream/session/<ref>/tcpproxy")
@bp.websocket("/stream/session/<ref>/httpproxy")
async def tcpproxy(ref: str) -> None:
    """A TCP connection to one of the session's apps (query: app, optional port), its bytes
    in binary frames both ways; started on demand by the kernel at the first connection.
    Closes with 1001 when the app closes, 1013 when it cannot be reached."""
    args = read_query(ProxyQuery)
    session, app = await session_app(ref, args.app, args.owner_access_key)
    port = app.ports[0] if args.port is None else args.port
    if port not in app.ports:
        raise InvalidAPIParams(f"the app {app.name} has no port {port} (it has {app.ports})")
    if args.arguments or args.envs:
        raise InvalidAPIParams(f"the app {app.name} takes no arguments or environment variables")
    node_id, kernel_id = await main_kernel(session)
    env = await app_environment(session, app)
    target = wire.OpenStream("", kernel_id, 0, "port", port=port, app=app.name, env=env)
    await websocket.accept()
    try:
        stream = await nodecalls.open_stream(core().hub, node_id, kernel_id, target)
    except NodeUnavailable as exc:
        await websocket.close(CLOSE_TRY_AGAIN, exc.msg[:120])
        return
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_client_to_app, stream)
            while data := await stream.receive():
                await websocket.send(data)
            tasks.cancel_scope.cancel()
    finally:
        await stream.aclose()
    with anyio.move_on_after(5):
        await websocket.close(CLOSE_GOING_AWAY, stream.error[:120])


async def session_app(
    ref: str, name: str, owner_access_key: str | None
) -> tuple[Session, apps.ServicePort]:
    """The caller's session `ref` and its app `name`; 404 when either is not there."""
    session = await _find(ref, owner_access_key)
    async with core().db() as db:
        app = apps.find(await apps.of_session(db, session), name)
    if app is None:
        raise ObjectNotFound("No such app service.")
    return session, app


async def app_environment(session: Session, app: apps.ServicePort) -> dict[str, str]:
    """What an app started in the session may need, the same whichever route starts it: the
    session's app token (JupyterLab's password, in the printed URL), the path the browser
    proxy serves it under, and the owner's SSH public key (the SSH server's one login)."""
    env = {
        "SHIPYARD_APP_TOKEN": apps.token(core().secrets, session),
        "SHIPYARD_APP_BASE_PATH": apps.base_path(session, app.name),
    }
    async with core().db() as db:
        public_key = await sshkeys.public_key(db, session.access_key)
    if public_key is not None:
        env["SHIPYARD_SSH_PUBLIC_KEY"] = public_key.strip()
    return env


async def _client_to_app(stream: wire.RelayStream) -> None:
    while True:
        data = await websocket.receive()
        if isinstance(data, bytes):  # the official client ignores text frames; so do we
            try:
                await stream.send(data)
            except wire.StreamClosed:
                return


@bp.websocket("/stream/session/<ref>/pty")
async def pty(ref: str) -> None:
    """A terminal in the session: text frames of JSON. To the server `{"type": "stdin",
    "chars": BASE64}`, `{"type": "resize", "rows", "cols"}`, `{"type": "ping"}`; from it
    `{"type": "out", "data": BASE64}` and, when the shell ends, `{"type": "exit", "code": N}`
    (a Shipyard addition) before the close."""
    args = read_query(PtyQuery)
    await serve_terminal(await _find(ref, args.owner_access_key), args.rows, args.cols)


async def serve_terminal(session: Session, rows: int, cols: int) -> None:
    """Accept the WebSocket and relay a new terminal in `session` over it until either side
    ends (also the web UI's terminal, controlplane/api/ui_sessions.py)."""
    node_id, kernel_id = await main_kernel(session)
    target = wire.OpenStream("", kernel_id, 0, "pty", rows=rows, cols=cols)
    await websocket.accept()
    try:
        stream = await nodecalls.open_stream(core().hub, node_id, kernel_id, target)
    except NodeUnavailable as exc:
        await websocket.close(CLOSE_TRY_AGAIN, exc.msg[:120])
        return
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_keys_to_terminal, stream)
            await _terminal_to_client(stream)
            tasks.cancel_scope.cancel()
    finally:
        await stream.aclose()
    with anyio.move_on_after(5):
        await websocket.close(1000 if not stream.error else CLOSE_ERROR, stream.error[:120])


async def _terminal_to_client(stream: wire.RelayStream) -> None:
    reader = TerminalReader()
    while data := await stream.receive():
        try:
            events = reader.feed(data)
        except ValueError as exc:  # the kernel sent something else: the stream is of no use
            await stream.aclose(str(exc))
            return
        for event in events:
            if isinstance(event, Output):
                text = base64.b64encode(event.data).decode()
                await websocket.send(json.dumps({"type": "out", "data": text}))
            elif isinstance(event, Exited):
                await websocket.send(json.dumps({"type": "exit", "code": event.status}))


async def _keys_to_terminal(stream: wire.RelayStream) -> None:
    while True:
        message = await websocket.receive()
        try:
            item: Any = json.loads(message)
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "stdin":
                await stream.send(input_frame(base64.b64decode(item["chars"], validate=True)))
            elif kind == "resize":
                rows, cols = int(item["rows"]), int(item["cols"])
                await stream.send(resize_frame(max(1, min(rows, 9999)), max(1, min(cols, 9999))))
        except (ValueError, KeyError, TypeError):
            continue  # not a message we know; like `ping` and `restart`, it changes nothing
        except wire.StreamClosed:
            return
