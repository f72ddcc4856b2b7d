"""The Quart application: wires the blueprints, the error mapping and the API's description,
and authenticates every route but the public ones."""

from __future__ import annotations

from typing import Any, cast

from quart import Quart, Response, current_app, g, request, websocket

from controlplane import audit
from controlplane.api import (
    admin,
    apidocs,
    app_proxy,
    apps,
    events,
    gql,
    misc,
    node,
    node_tokens,
    problems,
    scaling_groups,
    session,
    session_files,
    sshkeys,
    tenancy,
    ui,
    ui_admin,
    ui_auth,
    ui_folders,
    ui_limits,
    ui_live,
    ui_sessions,
    ui_users,
    vfolder_files,
    vfolder_sharing,
    vfolders,
)
from controlplane.api._backpressure import BoundedConnection, BoundedRequest
from controlplane.api._context import CORE_KEY, is_browser, is_public
from controlplane.api._typed import parse_json
from controlplane.api.auth import authenticate
from controlplane.core import Core
from controlplane.errors import InvalidAPIParams

READS = ("GET", "HEAD", "OPTIONS")


def _raw_target(scope: dict[str, Any]) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    target = path.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def _json_body() -> Any:
    """The request's JSON body, for the audit log; None for anything else (uploads)."""
    if request.mimetype != "application/json":
        return None
    try:
        return parse_json(await request.get_data())
    except InvalidAPIParams:
        return None


def create_app(the_core: Core) -> Quart:
    app = Quart("shipyard.controlplane", static_folder=None)
    app.request_class, app.asgi_http_class = BoundedRequest, BoundedConnection
    app.extensions[CORE_KEY] = the_core
    app.extensions[ui_auth.STORE_KEY] = ui_auth.BrowserSessions()
    app.config["MAX_CONTENT_LENGTH"] = 64 * 2**20
    problems.install(app)
    apidocs.install(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    async def _check(
        endpoint: str | None, method: str, scope: dict[str, Any], headers: Any, scheme: str
    ) -> None:
        view = current_app.view_functions.get(endpoint or "")
        if is_public(view) or is_browser(view):  # the web UI checks its own cookie
            return
        g.keypair = await authenticate(
            the_core.db,
            signers=the_core.signers,
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

    @app.after_request
    async def _audit(response: Response) -> Response:
        """Record a state-changing call or a sign-in (controlplane/audit.py)."""
        if request.method in READS or request.url_rule is None:
            return response
        action = f"{request.method} {request.path}"
        body = None if request.view_args else await _json_body()  # the path names the target
        target = audit.rest_target(request.view_args, body)
        failed = False
        if request.endpoint == tenancy.SIGN_IN_ENDPOINT:
            action, target = audit.SIGN_IN, None
        elif request.endpoint == gql.ENDPOINT:
            document = body.get("query") if isinstance(body, dict) else None
            variables = body.get("variables") if isinstance(body, dict) else None
            mutations = audit.graphql_mutations(document, variables)
            if mutations is None:
                return response  # a query reads
            action, target = "graphql " + ",".join(mutations.fields), mutations.target
            try:
                answer = parse_json(await response.get_data())
            except InvalidAPIParams:
                answer = None
            failed = audit.graphql_failed(answer, mutations.fields)
        keypair = g.get("keypair")
        actor = keypair.access_key if keypair is not None else g.get("sign_in_email")
        domain = keypair.user.domain_name if keypair is not None else g.get("sign_in_domain")
        the_core.audit.note(
            audit.entry(
                actor=actor,
                domain_name=domain,
                action=action,
                target=target,
                remote_addr=request.remote_addr or "",
                status_code=response.status_code,
                failed=failed,
            )
        )
        return response

    for blueprint in (
        misc.bp,
        session.bp,
        apps.bp,
        app_proxy.bp,
        sshkeys.bp,
        session_files.bp,
        admin.bp,
        node.bp,
        node_tokens.bp,
        tenancy.bp,
        scaling_groups.bp,
        gql.bp,
        events.bp,
        apidocs.bp,
        vfolders.bp,
        vfolder_sharing.bp,
        vfolder_files.bp,
        ui.bp,
        ui_admin.bp,
        ui_live.bp,
        ui_folders.bp,
        ui_sessions.bp,
        ui_users.bp,
        ui_limits.bp,
    ):
        app.register_blueprint(blueprint)
    return app
