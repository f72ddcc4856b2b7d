"""The web UI's ways into a running session (docs/webui.md): its terminal (xterm.js in the page,
over a WebSocket that the browser's sign-in authorizes) and its apps.

The terminal is the API's own relay (`apps.serve_terminal`, the protocol of
/stream/session/<ref>/pty); only the way in differs. The session cookie comes with the
WebSocket handshake, and since a handshake may come from any site's page (no CORS applies to
WebSockets), its Origin must be this control plane.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, cast
from urllib.parse import quote, urlsplit

from quart import Blueprint, Response, g, redirect, render_template, websocket
from quart_schema import hide

from controlplane import keypairs
from controlplane.api import app_proxy, apps, ui_auth
from controlplane.api._app_models import AppList, PtyQuery
from controlplane.api._context import core, requester
from controlplane.api._session_models import OwnerQuery
from controlplane.api._typed import read_query
from controlplane.api.app_proxy import AppLink
from controlplane.api.ui import api, find, problem_page
from controlplane.api.ui_auth import browser
from controlplane.db.models import Session
from controlplane.errors import AuthFailed, ControlPlaneError, CSRFRefused

bp = Blueprint("ui_sessions", __name__)
bp.register_error_handler(ControlPlaneError, problem_page)
V = Callable[..., Awaitable[Any]]


def app_link(session: Session, app: str, protocol: str) -> str:
    """Where a browser opens one of a session's apps: an HTTP app through the control plane's
    app proxy (`open_app` fetches its ticket when the link is followed), any other with
    `shipyard app` (a local port)."""
    if protocol in ("http", "preopen"):
        return f"/ui/sessions/{session.id}/apps/{quote(app, safe='')}/open"
    return f"shipyard app {session.name} {app}"


def browser_socket(view: V) -> V:
    """A UI WebSocket: the browser's session cookie names the keypair, and the handshake must
    come from a page of this control plane (its Origin), else it is refused before it opens."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        signed = ui_auth.store().get(websocket.cookies.get(ui_auth.COOKIE, ""))
        keypair = None
        if signed is not None:
            async with core().db() as db:
                keypair = await keypairs.get_active(db, signed.access_key)
        if keypair is None:
            raise AuthFailed("Sign in to the web UI first.")
        origin = urlsplit(websocket.headers.get("Origin", ""))
        if origin.netloc != websocket.host or origin.scheme not in ("http", "https"):
            raise CSRFRefused("This terminal opens only from Shipyard's own pages.")
        g.keypair = keypair
        return await view(*args, **kwargs)

    wrapper._shipyard_browser = True  # type: ignore[attr-defined]
    return cast(V, wrapper)


@bp.websocket("/ui/sessions/<ref>/terminal")
@browser_socket
async def terminal(ref: str) -> None:
    """A new terminal in the caller's own running session (query: rows, cols)."""
    size = read_query(PtyQuery)
    await apps.serve_terminal(await find(ref, requester()), size.rows, size.cols)


@bp.get("/ui/sessions/<ref>/apps/<app>/open")
@hide
@browser
async def open_app(ref: str, app: str) -> Response:
    """Open an HTTP app in this browser: a fresh one-minute ticket from the app proxy, which
    trades it for its own cookie at the app's path."""
    session = await find(ref, requester())
    made: AppLink = await api(app_proxy.link, ref=str(session.id), app=app, args=OwnerQuery())
    return cast(Response, redirect(made.path, 303))


@bp.get("/ui/sessions/<ref>/apps")
@hide
@browser
async def session_apps(ref: str) -> Response:
    """The session's apps as a fragment (the detail page loads it once it runs)."""
    session = await find(ref, requester())
    found: AppList = await api(apps.list_apps, ref=str(session.id), args=OwnerQuery())
    links = [
        (app.name, app.protocol, app_link(session, app.name, app.protocol)) for app in found.root
    ]
    body = await render_template("_session_apps.html", apps=links, session=session)
    return Response(body, content_type="text/html; charset=utf-8")
