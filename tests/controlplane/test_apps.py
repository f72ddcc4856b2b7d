"""Service ports and the app routes against a fake node whose relayed streams echo.

The real path (node, runner, Docker) is tests/e2e/test_apps.py; here: what the control plane
decides (which apps a session has, who may reach them, what the label may say) and that bytes
cross the relay both ways with the flow control in place.
"""

from __future__ import annotations

import json
import os
import re

import anyio
import pytest
from quart.testing import WebsocketResponseError
from quart.testing.connections import WebsocketDisconnectError

from controlplane import apps
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API, Keypair

pytestmark = pytest.mark.anyio

LABEL = "web:http:8080,echo:tcp:[9000,9001],ipython:pty:3000"


@pytest.fixture
async def labelled(api: API) -> FakeNode:
    fake = FakeNode(
        api.core,
        "i-apps",
        {"cpu": "2", "mem": str(4 * 2**30)},
        image_labels={apps.LABEL: LABEL},
    )
    await fake.connect()
    created = await api.call("POST", "/session", {"image": "python", "name": "apps"})
    assert created.status == 201, created.body
    assert created.body["status"] == "RUNNING"
    # the create's answer has the apps too (read without reading the session again)
    assert [app["name"] for app in created.body["servicePorts"]] == ["web", "echo"]
    return fake


async def _user(api: API, email: str) -> Keypair:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    return Keypair(created.body["accessKey"], created.body["secretKey"])


def test_the_label_is_read_as_backend_ai_reads_it() -> None:
    parsed = apps.parse("jupyter:http:8091, vscode:http:8180,tb:tcp:[6006,6007],ipy:pty:3000")
    assert [(a.name, a.protocol, a.ports) for a in parsed] == [
        ("jupyter", "http", (8091,)),
        ("vscode", "http", (8180,)),
        ("tb", "tcp", (6006, 6007)),
    ]
    for bad, why in [
        ("web:ftp:8080", "unknown protocol"),
        ("web:http:80", "port 80 is not allowed"),
        ("web:http:2200", "port 2200 is not allowed"),
        ("a:http:8080,b:tcp:8080", "port 8080 is used twice"),
        ("web:http", "cannot read"),
    ]:
        with pytest.raises(apps.ServicePortsError, match=why):
            apps.parse(bad)


async def test_a_running_sessions_apps_in_every_view(api: API, labelled: FakeNode) -> None:
    expected = [
        {"name": "web", "protocol": "http", "ports": [8080]},
        {"name": "echo", "protocol": "tcp", "ports": [9000, 9001]},
    ]
    listed = await api.call("GET", "/stream/session/apps/apps")
    assert listed.status == 200
    # to its owner, an http app comes with the URL to open: the session's app token in it
    template = listed.body[0].pop("url_template")
    # (under the path the browser proxy serves it at, which the app is told at start)
    pattern = r"http://\{host\}:\{port\}/app-proxy/[0-9a-f-]{36}/web/\?token=[0-9a-f]{32}"
    assert re.fullmatch(pattern, template)
    assert listed.body == expected
    assert (await api.call("GET", "/session/apps")).body["servicePorts"] == expected
    query = "{ compute_session_list(limit: 10, offset: 0) { items { name service_ports } } }"
    body = (await api.call("POST", "/admin/gql", {"query": query})).body
    [item] = body["data"]["compute_session_list"]["items"]
    assert json.loads(item["service_ports"]) == [
        {"name": "web", "protocol": "http", "container_ports": [8080], "host_ports": [],
         "is_inference": False},
        {"name": "echo", "protocol": "tcp", "container_ports": [9000, 9001], "host_ports": [],
         "is_inference": False},
    ]  # fmt: skip


async def test_a_session_that_ended_has_no_apps(api: API, labelled: FakeNode) -> None:
    assert (await api.call("DELETE", "/session/apps")).status == 200
    assert (await api.call("GET", "/stream/session/apps/apps")).body == []


async def test_a_malformed_label_refuses_the_session(api: API) -> None:
    fake = FakeNode(
        api.core, "i-bad", {"cpu": "2", "mem": "4g"}, image_labels={apps.LABEL: "web:ftp:21"}
    )
    await fake.connect()
    created = await api.call("POST", "/session", {"image": "python", "name": "badl"})
    assert created.status == 400
    assert "unknown protocol 'ftp'" in created.body["msg"]


async def test_tcpproxy_relays_bytes_both_ways(api: API, labelled: FakeNode) -> None:
    path = "/stream/session/apps/tcpproxy?app=echo&port=9001"
    client = api.app.test_client()
    payload = os.urandom(3 * 1024 * 1024)  # three flow-control windows
    async with client.websocket(path, headers=api.ws_headers(path)) as ws:
        with anyio.fail_after(30):
            received = bytearray()
            for start in range(0, len(payload), 256 * 1024):
                await ws.send(payload[start : start + 256 * 1024])
                while len(received) < min(len(payload), start + 256 * 1024):
                    received += await ws.receive()
            assert bytes(received) == payload
    # what an app started for this stream gets: the session's app token and its proxy path
    env = labelled.opens[-1].env
    assert env["SHIPYARD_APP_BASE_PATH"] == f"/app-proxy/{labelled.creates[-1].session_id}/echo/"
    assert re.fullmatch(r"[0-9a-f]{32}", env["SHIPYARD_APP_TOKEN"])
    # and, once the owner has an SSH key pair, its public key (the SSH server's one login)
    assert "SHIPYARD_SSH_PUBLIC_KEY" not in env
    keys = await api.call("PATCH", "/auth/ssh-keypair")
    async with client.websocket(path, headers=api.ws_headers(path)) as ws:
        await ws.send(b"x")
        assert await ws.receive() == b"x"
    env = labelled.opens[-1].env
    assert env["SHIPYARD_SSH_PUBLIC_KEY"] == keys.body["ssh_public_key"].strip()


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("app=jupyter", 404, "No such app service."),
        ("app=echo&port=9002", 400, "has no port 9002"),
        ("app=echo&arguments=%7B%22--x%22%3A+null%7D", 400, "takes no arguments"),
        ("app=echo&envs=nope", 400, "must be a JSON object"),
        ("port=9000", 400, "app"),
    ],
)
async def test_tcpproxy_refuses_what_it_cannot_serve(
    api: API, labelled: FakeNode, query: str, status: int, words: str
) -> None:
    path = f"/stream/session/apps/tcpproxy?{query}"
    client = api.app.test_client()
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket(path, headers=api.ws_headers(path)) as ws:
            await ws.receive()
    assert refused.value.response.status_code == status
    assert words in (await refused.value.response.get_data()).decode()


async def test_a_terminal_the_node_cannot_open_closes_saying_why(
    api: API, labelled: FakeNode
) -> None:
    path = "/stream/session/apps/pty"
    client = api.app.test_client()
    with pytest.raises(WebsocketDisconnectError) as closed:
        async with client.websocket(path, headers=api.ws_headers(path)) as ws:
            await ws.receive()
    assert closed.value.args[0] == 1013


async def test_another_keypair_finds_nothing(api: API, labelled: FakeNode) -> None:
    other = await _user(api, "other@example.com")
    assert (await api.call("GET", "/stream/session/apps/apps", keypair=other)).status == 404
    for path in ("/stream/session/apps/tcpproxy?app=echo", "/stream/session/apps/pty"):
        client = api.app.test_client()
        with pytest.raises(WebsocketResponseError) as refused:
            async with client.websocket(path, headers=api.ws_headers(path, other)) as ws:
                await ws.receive()
        assert refused.value.response.status_code == 404


async def test_the_browser_proxy_lets_in_by_its_cookie_only(api: API, labelled: FakeNode) -> None:
    made = await api.call("POST", "/stream/session/apps/apps/web/link")
    assert made.status == 200, made.body
    path = made.body["path"]
    assert re.fullmatch(r"/app-proxy/[0-9a-f-]{36}/web/\?ticket=\S+", path)
    base = path.split("?")[0]
    browser = api.app.test_client()
    traded = await browser.get(path)
    assert (traded.status_code, traded.headers["Location"]) == (303, base)
    cookie = traded.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and f"Path={base}" in cookie and "Max-Age=3600" in cookie
    # with the cookie the request reaches the app (the fake node's echo is no HTTP answer)
    reached = await browser.get(base + "api/status")
    assert reached.status_code == 503
    assert "did not answer in HTTP" in (await reached.get_data()).decode()
    stranger = api.app.test_client()
    forged = path[: path.rindex(".") + 1] + "0" * 32
    for url in (base, base + "api/status", forged):
        assert (await stranger.get(url)).status_code == 401
    other = await _user(api, "other-browser@example.com")
    link = "/stream/session/apps/apps/web/link"
    assert (await api.call("POST", link, keypair=other)).status == 404
