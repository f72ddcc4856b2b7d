"""The Quart application: wires the blueprints, the error mapping and the API's description,
and authenticates every route but the public ones."""

from __future__ import annotations

from typing import Any, cast

from quart import Quart, current_app, g, request, websocket

from controlplane.api import (
    admin,
    apidocs,
    events,
    gql,
    misc,
    node,
    node_tokens,
    problems,
    session,
    session_files,
)
from controlplane.api._context import CORE_KEY, is_public
from controlplane.api.auth import authenticate
from controlplane.core import Core


def _raw_target(scope: dict[str, Any]) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    target = path.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


def create_app(the_core: Core) -> Quart:
    app = Quart("shipyard.controlplane", static_folder=None)
    app.extensions[CORE_KEY] = the_core
    app.config["MAX_CONTENT_LENGTH"] = 64 * 2**20
    problems.install(app)
    apidocs.install(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    async def _check(
        endpoint: str | None, method: str, scope: dict[str, Any], headers: Any, scheme: str
    ) -> None:
        if is_public(current_app.view_functions.get(endpoint or "")):
            return
        async with the_core.db() as db:
            g.keypair = await authenticate(
                db,
                secrets=the_core.secrets,
                replays=the_core.replays,
                method="GET" if method == "WS" else method,
                target=_raw_target(scope),
                headers=headers,
                scheme=scheme,
            )

    @app.before_request
    async def _authenticate_request() -> None:
        scope = cast(dict[str, Any], request.scope)
        await _check(request.endpoint, request.method, scope, request.headers, request.scheme)

    @app.before_websocket
    async def _authenticate_websocket() -> None:
        scheme = "https" if websocket.scheme == "wss" else "http"
        scope = cast(dict[str, Any], websocket.scope)
        await _check(websocket.endpoint, "WS", scope, websocket.headers, scheme)

    for blueprint in (
        misc.bp,
        session.bp,
        session_files.bp,
        admin.bp,
        node.bp,
        node_tokens.bp,
        gql.bp,
        events.bp,
        apidocs.bp,
    ):
        app.register_blueprint(blueprint)
    return app
