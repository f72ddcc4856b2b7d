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
from urllib.parse import urlsplit

from quart import Blueprint, Response, g, render_template, websocket
from quart_schema import hide

from controlplane import keypairs
from controlplane.api import apps, ui_auth
from controlplane.api._app_models import AppList, PtyQuery
from controlplane.api._context import core, requester
from controlplane.api._session_models import OwnerQuery
from controlplane.api._typed import read_query
from controlplane.api.ui import api, find, problem_page
from controlplane.api.ui_auth import browser
from controlplane.errors import AuthFailed, ControlPlaneError, CSRFRefused

bp = Blueprint("ui_sessions", __name__)
bp.register_error_handler(ControlPlaneError, problem_page)
V = Callable[..., Awaitable[Any]]


def app_link(session_name: str, app: str) -> str:
    """Where a browser opens one of a session's apps: the one place that names the control
    plane's app proxy. Until the browser app proxy lands, `shipyard app` is the way in, so the
    page shows that command."""
    return f"shipyard app {session_name} {app}"


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


@bp.get("/ui/sessions/<ref>/apps")
@hide
@browser
async def session_apps(ref: str) -> Response:
    """The session's apps as a fragment (the detail page loads it once it runs)."""
    session = await find(ref, requester())
    found: AppList = await api(apps.list_apps, ref=str(session.id), args=OwnerQuery())
    links = [(app.name, app.protocol, app_link(session.name, app.name)) for app in found.root]
    body = await render_template("_session_apps.html", apps=links, session=session)
    return Response(body, content_type="text/html; charset=utf-8")
