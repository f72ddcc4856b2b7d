"""GET /openapi.json describes every route, validates as OpenAPI 3.1, and /docs renders it from
files in the package (issue 7 item 2)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from controlplane.api import apidocs
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


async def _document(api: API) -> dict[str, Any]:
    response = await api.app.test_client().get("/openapi.json")  # unsigned: it is public
    assert response.status_code == 200
    assert response.content_type == "application/json"
    document: dict[str, Any] = await response.get_json()
    return document


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]*:)?([^>]+)>", r"{\1}", rule)


async def test_document_is_valid_openapi_31(api: API) -> None:
    document = await _document(api)
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_every_route_is_described(api: API) -> None:
    document = await _document(api)
    websockets = {w["path"] for w in document["x-websockets"]}
    for rule in api.app.url_map.iter_rules():
        path = _openapi_path(rule.rule)
        if rule.websocket:
            assert path in websockets, rule.rule
            continue
        # the web UI's pages (docs/webui.md) and the apps' own pages behind the browser proxy
        # are not API
        if rule.rule.startswith(("/ui/", "/app-proxy/")):
            assert path not in document["paths"], rule.rule
            continue
        assert path in document["paths"], rule.rule
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                assert method.lower() in document["paths"][path], (method, rule.rule)


async def test_signing_scheme_and_public_routes(api: API) -> None:
    document = await _document(api)
    assert document["security"] == [{apidocs.SCHEME: []}]
    scheme = document["components"]["securitySchemes"][apidocs.SCHEME]
    assert (scheme["in"], scheme["name"]) == ("header", "Authorization")
    assert "X-BackendAI-Version" in scheme["description"]
    public = {
        path
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if operation.get("security") == []
    }
    # sign-in is unsigned; the folder transfers are authorized by a token from
    # request-upload/-download
    transfers = {"/folders/_/tus/upload", "/folders/_/download"}
    assert public == {
        "/",
        "/health",
        "/openapi.json",
        "/docs",
        "/docs/assets/{name}",
        "/auth/authorize",
        *transfers,
    }
    node = next(w for w in document["x-websockets"] if w["path"] == "/node/connect")
    assert node["security"] == []


async def test_backendai_shapes_are_in_the_document(api: API) -> None:
    document = await _document(api)
    create = document["paths"]["/session"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    properties = body["properties"]
    assert {"image", "name", "enqueueOnly", "reuseIfExists", "maxWaitSeconds"} <= set(properties)
    assert properties["enqueueOnly"]["anyOf"][0] == {"type": "boolean"}
    info = document["paths"]["/session/{ref}"]["get"]["responses"]["200"]["content"]
    info = info["application/json"]["schema"]["properties"]
    assert {"sessionId", "statusHistory", "architecture", "requestedSlots"} <= set(info)
    problem = create["responses"]["default"]["content"]["application/problem+json"]
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}


async def test_docs_render_from_the_package(api: API) -> None:
    client = api.app.test_client()
    page = await client.get("/docs")
    assert page.status_code == 200
    html = (await page.get_data()).decode()
    assert "openapi.json" in html
    # nothing is fetched from elsewhere: appliances are often air-gapped
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    [script] = re.findall(r'<script src="([^"]+)"', html)
    asset = await client.get("/" + script)
    assert asset.status_code == 200
    assert len(await asset.get_data()) > 500_000  # the viewer itself, not an error page
    missing = await client.get("/docs/assets/../../app.py")
    assert missing.status_code == 404
