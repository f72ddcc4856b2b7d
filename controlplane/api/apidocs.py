"""The API's own description: `GET /openapi.json` (OpenAPI 3.1, built by quart-schema from the
models each route validates and answers with) and `GET /docs`, a browsable page rendered by a
viewer vendored in this package (static/apidocs), so it works without Internet access.

Both are unsigned: they describe the API's shape, never any data, and a client needs them before
it has a keypair."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from quart import Blueprint, Quart, Response, current_app, jsonify, send_from_directory
from quart_schema import QuartSchema
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing.rules import Rule

from controlplane.api._context import is_public, public
from controlplane.api._models import Problem
from controlplane.api._typed import ServerSentEvents, TarArchives
from hostlib import __version__

bp = Blueprint("apidocs", __name__)
ASSETS = Path(__file__).with_name("static") / "apidocs"
SCHEME = "BackendAI-HMAC"
SECURITY_SCHEMES: dict[str, Any] = {
    SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": (
            "Backend.AI request signing (docs/backendai-api.md §3): `Authorization: BackendAI"
            " signMethod=HMAC-SHA256, credential=ACCESS_KEY:SIGNATURE`, with the request's"
            " `Date` (or `X-BackendAI-Date`) header, ISO 8601 or RFC 1123, within 15 minutes of"
            " the server's clock, and `X-BackendAI-Version: v7.20230615`. SIGNATURE is the hex"
            " HMAC-SHA256 of `METHOD\\nPATH?QUERY\\nDATE\\nhost:HOST\\ncontent-type:TYPE\\n"
            "x-backendai-version:VERSION\\nSHA256('')` under a key derived from the secret key,"
            " the date's YYYYMMDD and the host."
        ),
        "x-signed-headers": ["Date", "X-BackendAI-Date", "X-BackendAI-Version", "Host"],
    }
}
DESCRIPTION = """Shipyard's control plane: Backend.AI's REST API (the official clients work
unchanged) plus Shipyard's own routes. Errors are application/problem+json.

WebSocket routes (`x-websockets`) are not REST operations and are listed there instead: the
execute stream, the app proxy (tcpproxy/httpproxy) and the terminal (pty), all signed like any
request with content type application/octet-stream, and the node dial-in (a node's bearer
token)."""


class _Provider(OpenAPIProvider):
    """quart-schema's generator plus what it cannot know: which routes need no signature, the
    problem+json every route may answer, empty and event-stream bodies, the WebSocket routes."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
        document["components"]["schemas"]["Problem"] = Problem.model_json_schema(
            mode="serialization"
        )
        document["x-websockets"] = [
            _websocket(rule, self._app.view_functions[rule.endpoint])
            for rule in self._app.url_map.iter_rules()
            if rule.websocket
        ]
        return document

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        for operations in paths.values():
            for operation in operations.values():
                if is_public(view):
                    operation["security"] = []
                operation["responses"] = {
                    **operation["responses"],
                    "default": {
                        "description": "an error, as application/problem+json",
                        "content": {
                            "application/problem+json": {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        },
                    },
                }
        return paths, components

    def build_response_object(
        self, model: Any, headers_model: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is None:
            return {"description": "no content"}, {}
        if model is ServerSentEvents:
            content = {"text/event-stream": {"schema": {"type": "string"}}}
            return {"description": "server-sent events", "content": content}, {}
        if model is TarArchives:
            content = {"multipart/mixed": {"schema": {"type": "string", "format": "binary"}}}
            return {"description": "one tar archive per part", "content": content}, {}
        if not isinstance(model, type):  # a union of models, which quart-schema cannot read
            schema = TypeAdapter(model).json_schema(
                ref_template="#/components/schemas/{model}", mode="serialization"
            )
            definitions = schema.pop("$defs", {})
            return {"description": "", "content": {"application/json": {"schema": schema}}}, (
                definitions
            )
        return super().build_response_object(model, headers_model)


def _websocket(rule: Rule, view: Any) -> dict[str, Any]:
    return {
        "path": re.sub(r"<(?:[^:>]*:)?([^>]+)>", r"{\1}", rule.rule),  # <path:rest> -> {rest}
        "description": inspect.getdoc(view) or "",
        "security": [] if is_public(view) else [{SCHEME: []}],
    }


def install(app: Quart) -> None:
    """Let quart-schema generate the document; the routes that serve it are ours (unsigned,
    and the viewer from the package instead of a CDN)."""
    QuartSchema(
        app,
        openapi_path=None,
        info={"title": "Shipyard", "version": __version__, "description": DESCRIPTION},
        security=[{SCHEME: []}],
        openapi_provider_class=_Provider,
    )


@bp.get("/openapi.json")
@public
async def openapi() -> Response:
    schema = current_app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return jsonify(schema)


@bp.get("/docs")
@public
async def docs() -> Response:
    page = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shipyard API</title></head>
<body><redoc spec-url="openapi.json"></redoc>
<script src="docs/assets/redoc.standalone.js"></script></body></html>"""
    return Response(page, content_type="text/html; charset=utf-8")


@bp.get("/docs/assets/<path:name>")
@public
async def docs_asset(name: str) -> Response:
    return await send_from_directory(ASSETS, name)
