"""Every error the API returns, as application/problem+json (docs/backendai-api.md §5).

The handlers serve WebSocket upgrades too (an unknown path, a refused signature, a failure in a
stream handler), so they read the method and path from whichever context is active: touching
`request` inside a WebSocket handler would itself fail.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from quart import Quart, Response, has_request_context, has_websocket_context, request, websocket
from werkzeug.exceptions import HTTPException

from controlplane.errors import ControlPlaneError, MethodNotAllowed, URLNotFound

log = logging.getLogger(__name__)
PROBLEM_BASE = "https://api.backend.ai/probs/"


def problem(status: int, slug: str, title: str, msg: str = "", data: Any = None) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title}
    if msg:
        body["msg"] = msg
    if data is not None:
        body["data"] = data
    return Response(json.dumps(body), status=status, content_type="application/problem+json")


def from_error(error: ControlPlaneError) -> Response:
    return problem(error.status, error.slug, error.title, error.msg, error.data)


def _where() -> tuple[str, str]:
    """The method and path being served ("WS" for a WebSocket)."""
    if has_websocket_context():
        return "WS", websocket.path
    if has_request_context():
        return request.method, request.path
    return "-", "-"


def install(app: Quart) -> None:
    @app.errorhandler(ControlPlaneError)
    async def _domain(error: ControlPlaneError) -> Response:
        return from_error(error)

    @app.errorhandler(HTTPException)
    async def _http(error: HTTPException) -> Response:
        method, path = _where()
        if error.code == 404:
            return from_error(URLNotFound(f"{method} {path}", data=path))
        if error.code == 405:
            return from_error(MethodNotAllowed(f"{method} is not allowed here"))
        status = error.code or 400
        return problem(status, "generic-bad-request", "Bad request.", error.description or "")

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        method, path = _where()
        log.error("unhandled error in %s %s", method, path, exc_info=error)
        return problem(500, "internal-server-error", "Internal server error.")
