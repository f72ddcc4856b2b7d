"""Hostile and malformed input gets a 4xx that says what to fix, never a 500 (issue 8 items 3,
8 and 9). Each test names the item it keeps fixed."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import anyio
import pytest
from quart.testing import WebsocketResponseError
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, DataSource
from sqlalchemy import func, select

from controlplane.api._context import public
from controlplane.db.models import JoinToken, Keypair, Session
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


def _invalid(response: Any, field: str | None = None) -> None:
    assert response.status == 400, response.body
    assert response.content_type == PROBLEM
    assert response.body["type"].endswith("/invalid-api-params")
    if field is not None:
        assert field in response.body["data"], response.body


async def _count(api: API, model: Any) -> int:
    async with api.core.db() as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


def _json_routes(api: API) -> list[tuple[str, str]]:
    """(method, path) of every route that reads a JSON body, path parameters filled in."""
    routes = []
    for rule in api.app.url_map.iter_rules():
        view = api.app.view_functions[rule.endpoint]
        request_body = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
        if rule.websocket or request_body is None or request_body[1] != DataSource.JSON:
            continue
        path = re.sub(r"<(?:[^:>]*:)?[^>]+>", "x-session", rule.rule)
        routes += [(m, path) for m in sorted(rule.methods or ()) if m not in ("HEAD", "OPTIONS")]
    return routes


# --- item 9: deeply nested JSON ---------------------------------------------------------------


@pytest.mark.parametrize("depth", [40, 100_000])
async def test_deeply_nested_json_on_every_json_route(api: API, depth: int) -> None:
    """Item 9: a RecursionError in the JSON decoder was a 500 on every JSON route; a document
    under Python's recursion limit but deeper than any real body is refused too."""
    routes = _json_routes(api)
    assert ("POST", "/session") in routes and ("POST", "/admin/gql") in routes
    nested = ("[" * depth + "]" * depth).encode()
    for method, path in routes:
        response = await api.call(method, path, raw=nested)
        _invalid(response)
        assert "nested deeper" in response.body["msg"], (method, path)


async def test_json_without_nan_and_infinity(api: API) -> None:
    """Python's json reads NaN and Infinity; JSON has neither."""
    for raw in (b'{"ttl": NaN}', b'{"ttl": Infinity}', b'{"ttl": -Infinity}'):
        response = await api.call("POST", "/admin/node-tokens", raw=raw)
        _invalid(response)
        assert "not a JSON number" in response.body["msg"]


# --- items 3 and 9: resource requests --------------------------------------------------------


@pytest.mark.parametrize(
    "resources",
    [
        {"cpu": "NaN"},  # item 9: Decimal NaN made the comparison itself fail
        {"cpu": "Infinity"},
        {"cpu": "-Infinity"},
        {"cpu": "1e-9"},  # item 3: NanoCpus=1, which docker reads as "no limit"
        {"cpu": "0.001"},
        {"cpu": "0"},
        {"cpu": "-1"},
        {"cpu": "1e400"},
        {"cpu": 1e-9},
        {"cpu": 100000},
        {"cpu": True},
        {"mem": "1m"},
        {"mem": "NaN"},
        {"mem": "99999999999999999999999999999g"},
        {"mem": 1024},
    ],
)
async def test_resource_requests_out_of_bounds(
    api: API, node: FakeNode, resources: dict[str, Any]
) -> None:
    """Item 3: finite, at least 0.01 CPU (the share cgroups enforce, NanoCpus 10_000_000) and
    at least 64 MiB, at most 1024 CPUs and 64 TiB; nothing is created and no node hears of it."""
    body = {"image": "python", "name": "bounds", "config": {"resources": resources}}
    response = await api.call("POST", "/session", body)
    _invalid(response, "config.resources")
    assert await _count(api, Session) == 0
    assert node.kernels == {}


async def test_smallest_cpu_request_reaches_the_node_as_enforceable(
    api: API, node: FakeNode
) -> None:
    """Item 3: the least a session may ask for is what the node can enforce."""
    body = {"image": "python", "name": "tiny", "config": {"resources": {"cpu": "0.01"}}}
    created = await api.call("POST", "/session", body)
    assert created.status == 201, created.body
    info = await api.call("GET", "/session/tiny")
    assert info.body["requestedSlots"]["cpu"] == "0.01"


# --- item 9: runId, join-token ttl, signMethod, GraphQL filter ---------------------------------


@pytest.mark.parametrize("run_id", [["a"], {"a": 1}, 5, True])
async def test_run_id_must_be_a_string(api: API, node: FakeNode, run_id: Any) -> None:
    """Item 9: a list as runId was an unhashable-type 500."""
    assert (await api.call("POST", "/session", {"image": "python", "name": "runs"})).status == 201
    response = await api.call("POST", "/session/runs", {"mode": "continue", "runId": run_id})
    _invalid(response, "runId")


@pytest.mark.parametrize(
    "raw", [b'{"ttl": 1e308}', b'{"ttl": 1267650600228229401496703205376}', b'{"ttl": 1e999}']
)
async def test_join_token_ttl_out_of_range(api: API, raw: bytes) -> None:
    """Item 9: 1e308 and 2**100 seconds overflowed timedelta (NaN and the infinities: above)."""
    response = await api.call("POST", "/admin/node-tokens", raw=raw)
    assert response.status == 400, response.body
    assert response.content_type == PROBLEM
    assert await _count(api, JoinToken) == 0


async def test_join_token_ttl_in_range(api: API) -> None:
    response = await api.call("POST", "/admin/node-tokens", {"ttl": 3600})
    assert response.status == 201
    default = await api.call("POST", "/admin/node-tokens")
    assert default.status == 201


@pytest.mark.parametrize("method", ["HMAC-SHAKE_128", "HMAC-SHAKE_256", "HMAC-NOPE"])
async def test_sign_method_without_fixed_digest(api: API, method: str) -> None:
    """Item 9: SHAKE has no fixed digest length; computing the signature with it was a 500
    before the signature was even compared."""
    header = f"BackendAI signMethod={method}, credential={api.admin.access_key}:00"
    response = await api.call("GET", "/session", headers={"Authorization": header})
    assert response.status == 400
    assert response.body["type"].endswith("/invalid-auth-params")
    assert "signMethod" in response.body["msg"]


@pytest.mark.parametrize("number", ["9" * 30, "9" * 5000, "-9223372036854775809"])
async def test_huge_integer_in_a_graphql_filter(api: API, number: str) -> None:
    """Item 9: an integer the database cannot hold was an internal error inside the GraphQL
    answer; now it is the client's error, with the 400 Backend.AI clients read from it."""
    query = (
        "query($filter: String) { compute_session_list(limit: 10, offset: 0, filter: $filter)"
        " { total_count } }"
    )
    body = {"query": query, "variables": {"filter": f"name == {number}"}}
    response = await api.call("POST", "/admin/gql", body)
    assert response.status == 200
    [error] = response.body["errors"]
    assert "64-bit integer" in error["message"]
    assert error["extensions"]["status"] == 400


# --- item 9: WebSockets ------------------------------------------------------------------------


async def test_unauthenticated_upgrade_to_an_unknown_path(
    api: API, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 9: the 404 handler read `request` inside a WebSocket and crashed with "Not within a
    request context", answering 500."""
    with pytest.raises(WebsocketResponseError) as refused:
        async with api.app.test_client().websocket("/no/such/stream") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 404
    assert "Not within a request context" not in caplog.text


async def test_unexpected_error_in_a_websocket_handler(
    api: API, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 9: any other failure in a WebSocket handler reaches the problem handler, which
    logs it with the path instead of failing itself."""

    @api.app.websocket("/test/fails")
    @public
    async def fails() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR), pytest.raises(WebsocketResponseError) as refused:
        async with api.app.test_client().websocket("/test/fails") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 500
    assert "unhandled error in WS /test/fails" in caplog.text
    assert "Not within a request context" not in caplog.text


async def test_refused_signature_on_a_websocket(api: API) -> None:
    with pytest.raises(WebsocketResponseError) as refused:
        async with api.app.test_client().websocket("/stream/session/x/execute") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000 + "]" * 100_000,  # item 9: RecursionError escaped the handler
        "[" * 40 + "]" * 40,
        '{"mode": "query", "code": ["print(1)"]}',
        '{"mode": "continue"}',
        "not json",
    ],
)
async def test_bad_first_execute_frame(api: API, node: FakeNode, frame: str) -> None:
    """Item 9: the first frame of the execute stream is validated like a request body; the
    client hears why in an error frame and a finished frame, and the stream closes."""
    created = await api.call("POST", "/session", {"image": "python", "name": "stream"})
    path = f"/stream/session/{created.body['sessionId']}/execute"
    client = api.app.test_client()
    async with client.websocket(path, headers=api.ws_headers(path)) as ws:
        await ws.send(frame)
        with anyio.fail_after(10):
            error = json.loads(await ws.receive())
            finished = json.loads(await ws.receive())
    assert error["status"] == "error" and error["msg"]
    assert finished["status"] == "finished" and finished["exitCode"] == 1
    assert node.kernels  # the session is untouched


# --- item 8: booleans are booleans -------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, [], {}])
async def test_is_admin_must_be_a_boolean(api: API, value: Any) -> None:
    """Item 8: {"isAdmin": "false"} created an admin keypair."""
    before = await _count(api, Keypair)
    response = await api.call(
        "POST", "/admin/keypairs", {"user": "eve@example.com", "isAdmin": value}
    )
    _invalid(response, "isAdmin")
    assert await _count(api, Keypair) == before


async def test_is_admin_false_makes_a_user(api: API) -> None:
    created = await api.call(
        "POST", "/admin/keypairs", {"user": "eve@example.com", "isAdmin": False}
    )
    assert (created.status, created.body["isAdmin"]) == (201, False)


@pytest.mark.parametrize("key", ["enqueueOnly", "reuseIfExists", "enqueue_only"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1])
async def test_session_flags_must_be_booleans(
    api: API, node: FakeNode, key: str, value: Any
) -> None:
    """Item 8: enqueueOnly "false" was taken as true."""
    response = await api.call("POST", "/session", {"image": "python", "name": "flags", key: value})
    _invalid(response, key)
    assert await _count(api, Session) == 0


async def test_query_string_booleans(api: API, node: FakeNode) -> None:
    """A query string carries text: true/false (and 1/0) are read, anything else refused."""
    assert (await api.call("GET", "/session?all=true")).status == 200
    assert (await api.call("GET", "/session?all=0")).status == 200
    _invalid(await api.call("GET", "/session?all=maybe"), "all")


# --- issue 7 item 1: every wrong field is listed -----------------------------------------------


async def test_each_wrong_field_is_listed(api: API) -> None:
    body = {
        "image": "",
        "name": "a",
        "type": "sideways",
        "maxWaitSeconds": -1,
        "config": {"environ": {"A": 1}, "resources": {"gpu": "1"}},
    }
    response = await api.call("POST", "/session", body)
    _invalid(response)
    assert set(response.body["data"]) == {
        "image",
        "name",
        "type",
        "maxWaitSeconds",
        "config.environ.A",
        "config.resources",
    }
    assert "unknown resource slot(s) gpu" in response.body["data"]["config.resources"]


async def test_architecture_comes_from_the_node(api: API) -> None:
    """Issue 7 item 9: sessions said x86_64 whatever their node was."""
    arm = FakeNode(api.core, "i-arm", {"cpu": "2", "mem": str(4 * 2**30)}, architecture="aarch64")
    await arm.connect()
    created = await api.call("POST", "/session", {"image": "python", "name": "on-arm"})
    assert created.status == 201
    info = await api.call("GET", "/session/on-arm")
    assert (info.body["node"], info.body["architecture"]) == ("i-arm", "aarch64")
