"""The browser's way to a session's HTTP app: a reverse proxy at a stable path per session and
app, `/app-proxy/<session id>/<app>/...`, HTTP and WebSocket, every byte over the relay.

A browser cannot sign requests, so it is let in by a cookie, never by a key in the URL:

1. the owner (or an admin) asks, signed, `POST /stream/session/<ref>/apps/<app>/link` and gets
   the path with a ticket good for TICKET_SECONDS (the CLI's `shipyard app --browser` and the
   web UI do this);
2. opening it trades the ticket for an HttpOnly cookie scoped to that session and app's path
   (COOKIE_SECONDS) and redirects to the path without the ticket.

Both are MACs with a key derived from the control plane's secrets key, over the access key, the
session, the app and the expiry time: nothing is stored. Every request checks the cookie, then
that its keypair is still active and still owns the session (or is an admin), so another
keypair gets 404 as on every session route. WebSockets need an Origin of this host too (a
cookie alone would let another site's page open one). The proxy logs in to the app with the
session's app token (`Authorization: token ...`), and tells the app its path at start
(`SHIPYARD_APP_BASE_PATH`), so apps serve under it (JupyterLab's base_url, ttyd's -b).
"""

from __future__ import annotations

import contextlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import h11
from pydantic import Field
from quart import Blueprint, Response, g, redirect, request, websocket
from quart_schema import hide
from werkzeug.datastructures import Headers
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

import wire
from controlplane import apps, keypairs, nodecalls
from controlplane.api._context import core, requester
from controlplane.api._session_models import OwnerQuery
from controlplane.api._typed import Reply, query, returns
from controlplane.api.apps import CLOSE_TRY_AGAIN, app_environment, main_kernel, session_app
from controlplane.apps import ServicePort
from controlplane.db.models import Session
from controlplane.errors import AuthFailed, InsufficientPrivilege, NodeUnavailable

bp = Blueprint("app_proxy", __name__)
TICKET_SECONDS = 60
COOKIE_SECONDS = 3600
COOKIE = "shipyard_app"
_HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "cookie", "authorization", "content-length",
))  # fmt: skip


class AppLink(Reply):
    path: str = Field(description="open it in a browser within a minute (relative to the API)")


def _mac(kind: str, access_key: str, session_id: str, app: str, expiry: int) -> str:
    return core().secrets.token(f"{kind}:{access_key}:{session_id}:{app}:{expiry}")


def _pass(kind: str, access_key: str, session_id: str, app: str, seconds: int) -> str:
    expiry = int(time.time()) + seconds
    return f"{access_key}.{expiry}.{_mac(kind, access_key, session_id, app, expiry)}"


def _check(kind: str, value: str, session_id: str, app: str) -> str | None:
    """The access key a valid, unexpired ticket or cookie names; None otherwise."""
    access_key, _, rest = value.partition(".")
    expiry, _, mac = rest.partition(".")
    if not expiry.isdigit() or int(expiry) < time.time():
        return None
    expected = _mac(kind, access_key, session_id, app, int(expiry))
    return access_key if hmac.compare_digest(expected, mac) else None


@bp.post("/stream/session/<ref>/apps/<app>/link")
@returns(AppLink)
@query(OwnerQuery)
async def link(ref: str, app: str, args: OwnerQuery) -> AppLink:
    """A path that opens the app in a browser: its ticket is good for a minute; once opened, a
    cookie keeps that browser in for an hour (a Shipyard route)."""
    session, found = await session_app(ref, app, args.owner_access_key)
    ticket = _pass("ticket", requester().access_key, str(session.id), found.name, TICKET_SECONDS)
    return AppLink(path=f"{apps.base_path(session, found.name)}?ticket={ticket}")


async def _authorized(session_id: str, app: str, cookie: str) -> tuple[Session, ServicePort]:
    """The session and app the cookie lets this request reach; 401 or 404 otherwise."""
    access_key = _check("cookie", cookie, session_id, app) if cookie else None
    if access_key is None:
        raise AuthFailed("Open the app with `shipyard app SESSION APP --browser`.")
    async with core().db() as db:
        keypair = await keypairs.get_active(db, access_key)
        try:
            session = await db.get(Session, uuid.UUID(session_id))
        except ValueError:
            session = None
    if keypair is None:
        raise AuthFailed("The keypair that opened this app is no longer active.")
    g.keypair = keypair
    # as on every session route: an admin reaches another's session by naming its owner
    owner = session.access_key if keypair.is_admin and session is not None else None
    return await session_app(session_id, app, owner)


def _browser(view: Any) -> Any:
    view._shipyard_browser = True  # app.py skips the signature check: the cookie is checked here
    return view


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@bp.route(f"{apps.PROXY_PREFIX}/<session_id>/<app>/", defaults={"rest": ""}, methods=_METHODS)
@bp.route(f"{apps.PROXY_PREFIX}/<session_id>/<app>/<path:rest>", methods=_METHODS)
@hide  # the app's own pages, not our API (the OpenAPI document leaves them out)
@_browser
async def http_proxy(session_id: str, app: str, rest: str) -> Any:
    """A request to the app, authorized by the cookie; with a `ticket`, set the cookie first."""
    ticket = request.args.get("ticket")
    if ticket is not None:
        return _trade(ticket, session_id, app)
    session, found = await _authorized(session_id, app, request.cookies.get(COOKIE, ""))
    target = request.full_path if request.query_string else request.path
    body = cast(bytes, await request.get_data(as_text=False))
    stream = await _open(session, found)
    try:
        client = h11.Connection(h11.CLIENT)
        headers = [*_headers(request.headers, session), ("Content-Length", str(len(body)))]
        head = h11.Request(method=request.method, target=target, headers=headers)
        await stream.send(client.send(head) + (client.send(h11.Data(data=body)) if body else b"")
                          + client.send(h11.EndOfMessage()))  # fmt: skip
        answer = await _response_head(client, stream)
    except h11.ProtocolError as exc:
        await stream.aclose()
        raise NodeUnavailable(f"the app {found.name} did not answer in HTTP: {exc}") from None
    except BaseException:
        await stream.aclose()
        raise
    headers = [(k.decode(), v.decode()) for k, v in answer.headers
               if k.decode().lower() not in _HOP_BY_HOP]  # fmt: skip
    return Response(_body(client, stream), status=answer.status_code, headers=Headers(headers))


def _trade(ticket: str, session_id: str, app: str) -> Response:
    """The ticket for a cookie scoped to the app's path, and a redirect there."""
    access_key = _check("ticket", ticket, session_id, app)
    if access_key is None:
        raise AuthFailed("This link has expired: ask for a new one.")
    path = f"{apps.PROXY_PREFIX}/{session_id}/{app}/"
    response = cast(Response, redirect(path, 303))
    response.set_cookie(
        COOKIE,
        _pass("cookie", access_key, session_id, app, COOKIE_SECONDS),
        max_age=COOKIE_SECONDS,
        path=path,
        httponly=True,
        secure=request.scheme == "https",
        samesite="Lax",  # Strict would drop it on the redirect from a link in the web UI
    )
    return response


def _headers(headers: Any, session: Session) -> list[tuple[str, str]]:
    token = apps.token(core().secrets, session)
    kept = [(k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP]
    return [("Host", "127.0.0.1"), ("Connection", "close"),
            ("Authorization", f"token {token}"), *kept]  # fmt: skip


async def _response_head(client: h11.Connection, stream: wire.RelayStream) -> h11.Response:
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive())
        elif isinstance(event, h11.Response):
            return event
        elif not isinstance(event, h11.InformationalResponse):
            raise NodeUnavailable(f"the app answered no HTTP response: {event!r}")


async def _body(client: h11.Connection, stream: wire.RelayStream) -> AsyncIterator[bytes]:
    try:
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await stream.receive())
            elif isinstance(event, h11.Data):
                yield bytes(event.data)
            else:
                return
    finally:
        await stream.aclose()


async def _open(session: Session, found: ServicePort) -> wire.RelayStream:
    node_id, kernel_id = await main_kernel(session)
    env = await app_environment(session, found)
    port = found.ports[0]
    target = wire.OpenStream("", kernel_id, 0, "port", port=port, app=found.name, env=env)
    return await nodecalls.open_stream(core().hub, node_id, kernel_id, target)


@bp.websocket(f"{apps.PROXY_PREFIX}/<session_id>/<app>/<path:rest>")
@_browser
async def websocket_proxy(session_id: str, app: str, rest: str) -> None:
    """A WebSocket to the app (Jupyter's kernels, ttyd), authorized by the cookie and Origin."""
    session, found = await _authorized(session_id, app, websocket.cookies.get(COOKIE, ""))
    if urlsplit(websocket.headers.get("Origin", "")).netloc != websocket.host:
        raise InsufficientPrivilege("A WebSocket to an app must come from a page of this site.")
    try:
        stream = await _open(session, found)
    except NodeUnavailable as exc:
        await websocket.close(CLOSE_TRY_AGAIN, exc.msg[:120])
        return
    try:
        peer = WSConnection(ConnectionType.CLIENT)
        target = websocket.full_path if websocket.query_string else websocket.path
        extra = [(k.encode(), v.encode()) for k, v in _headers({}, session)[2:]]
        hello = Request(host="127.0.0.1", target=target, extra_headers=extra,
                        subprotocols=list(websocket.requested_subprotocols))  # fmt: skip
        await stream.send(peer.send(hello))
        accepted = await _handshake(peer, stream)
        if accepted is None:
            await websocket.close(CLOSE_TRY_AGAIN, "the app refused the WebSocket")
            return
        await websocket.accept(subprotocol=accepted.subprotocol)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_browser_to_app, peer, stream)
            await _app_to_browser(peer, stream)
            tasks.cancel_scope.cancel()
    finally:
        await stream.aclose()


async def _handshake(peer: WSConnection, stream: wire.RelayStream) -> AcceptConnection | None:
    while data := await stream.receive():
        peer.receive_data(data)
        for event in peer.events():
            if isinstance(event, AcceptConnection):
                return event
            return None  # a rejection, or anything else
    return None


async def _browser_to_app(peer: WSConnection, stream: wire.RelayStream) -> None:
    while True:
        message = await websocket.receive()
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        try:
            await stream.send(peer.send(event))
        except wire.StreamClosed:
            return


async def _app_to_browser(peer: WSConnection, stream: wire.RelayStream) -> None:
    parts: list[Any] = []
    while data := await stream.receive():
        peer.receive_data(data)
        for event in peer.events():
            if isinstance(event, TextMessage | BytesMessage):
                parts.append(event.data)
                if event.message_finished:
                    whole = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                    parts.clear()
                    await websocket.send(whole)
            elif isinstance(event, Ping):
                await stream.send(peer.send(event.response()))
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(LocalProtocolError, wire.StreamClosed):
                    await stream.send(peer.send(event.response()))
                return
