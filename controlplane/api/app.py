"""The Quart application: authentication for every route but the public ones, and helpers the
blueprints share."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar, cast

from quart import Quart, current_app, g, request, websocket
from quart_schema import QuartSchema

from controlplane.api import problems
from controlplane.api.auth import authenticate
from controlplane.core import Core
from controlplane.db.models import Keypair
from controlplane.errors import InsufficientPrivilege, InvalidAPIParams

F = TypeVar("F", bound=Callable[..., Any])


def public(view: F) -> F:
    """Mark a view that needs no signature (the version probe, health, node dial-in)."""
    view._shipyard_public = True  # type: ignore[attr-defined]
    return view


def core() -> Core:
    return cast(Core, current_app.extensions["shipyard.core"])


def requester() -> Keypair:
    return cast(Keypair, g.keypair)


def require_admin() -> Keypair:
    keypair = requester()
    if not keypair.is_admin:
        raise InsufficientPrivilege("this needs an admin keypair")
    return keypair


async def read_json() -> Any:
    """The JSON body (also on GET, as Backend.AI clients send); {} when there is none."""
    raw = await request.get_data()
    if not raw or not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidAPIParams(f"Malformed JSON body: {exc}") from exc


def _raw_target(scope: dict[str, Any]) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    target = path.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


def create_app(the_core: Core) -> Quart:
    from controlplane.api import admin, events, gql, misc, node, node_tokens, session

    app = Quart("shipyard.controlplane")
    # request/response models (quart-schema, pydantic); the OpenAPI routes are not served yet.
    # First: it installs its own JSON provider, which the next lines configure.
    QuartSchema(
        app, openapi_path=None, redoc_ui_path=None, scalar_ui_path=None, swagger_ui_path=None
    )
    app.extensions["shipyard.core"] = the_core
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = 64 * 2**20
    problems.install(app)

    async def _check(
        endpoint: str | None, method: str, scope: dict[str, Any], headers: Any, scheme: str
    ) -> None:
        view = current_app.view_functions.get(endpoint or "")
        if view is None or getattr(view, "_shipyard_public", False):
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

    for blueprint in (misc.bp, session.bp, admin.bp, node.bp, node_tokens.bp, gql.bp, events.bp):
        app.register_blueprint(blueprint)
    return app
