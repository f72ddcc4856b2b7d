"""A node id belongs to the credential that first registered it (issue 8, item 2): a fresh join
token, or the shared node token, cannot take over a node that exists; the impostor gets no
frame, the real node's sessions go on, and the impostor leaving does not lose the real node.
Admins list and revoke join tokens."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError

import wire
from controlplane.errors import NodeUnavailable
from controlplane.testing import TEST_IMAGE
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


async def _token(api: API) -> str:
    response = await api.call("POST", "/admin/node-tokens", {"ttl": 3600})
    assert response.status == 201, response.body
    return str(response.body["token"])


def _register(node_id: str, cpu: str = "2") -> str:
    return wire.encode(
        wire.Register(
            node_id=node_id,
            version="test",
            architecture="x86_64",
            network_mode="none",
            slots={"cpu": cpu, "mem": str(4 * 2**30)},
            images=[
                wire.ImageInfo(
                    TEST_IMAGE,
                    "sha256:x",
                    1,
                    "x86_64",
                    ["python"],
                    {"ai.shipyard.kernel": "1", "ai.shipyard.recipe.revision": "2"},
                )
            ],
            kernels=[],
        )
    )


async def _until(predicate: Any) -> None:
    """Poll `predicate` (a coroutine function) for up to 10 s."""
    for _ in range(1000):
        if await predicate():
            return
        await anyio.sleep(0.01)
    raise AssertionError("timed out")


@dataclass
class WsNode:
    """A node over the real WebSocket route: registers, then answers like a node would."""

    api: API
    token: str
    node_id: str
    frames: list[wire.Message] = field(default_factory=list)
    closed: anyio.Event = field(default_factory=anyio.Event)
    ws: Any = None
    conn: Any = None

    def _live(self) -> Any:
        try:
            return self.api.core.hub.get(self.node_id)
        except NodeUnavailable:
            return None

    async def gone(self) -> bool:
        return self._live() is not self.conn

    async def serve_until_registered(self, ws: Any) -> None:
        before = self._live()  # the connection this one replaces, if any
        await ws.send(_register(self.node_id))

        async def registered() -> bool:  # this connection's Register is recorded
            live = self._live()
            return live not in (None, before) and bool(live.registered)

        await _until(registered)
        self.conn = self._live()

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with self.api.app.test_client().websocket("/node/connect", headers=headers) as ws:
                self.ws = ws
                await self.serve_until_registered(ws)
                task_status.started()
                while True:
                    message = wire.decode(await ws.receive())
                    self.frames.append(message)
                    match message:
                        case wire.CreateKernel():
                            result = {"container_id": uuid.uuid4().hex}
                            await ws.send(wire.encode(wire.Reply(message.req_id, True, result)))
                        case wire.DestroyKernel():
                            result = {"exit_code": 0}
                            await ws.send(wire.encode(wire.Reply(message.req_id, True, result)))
                        case wire.GetLogs():
                            result = {"logs": ""}
                            await ws.send(wire.encode(wire.Reply(message.req_id, True, result)))
        except WebsocketDisconnectError:
            self.closed.set()


@asynccontextmanager
async def _connected(api: API, token: str, node_id: str) -> AsyncIterator[WsNode]:
    node = WsNode(api, token, node_id)
    async with anyio.create_task_group() as tg:
        await tg.start(node.serve)
        yield node
        # hang up as a node does, and let the handler end before the client is cancelled (a
        # cancelled test client would cancel the app's task and orphan the handler)
        await node.ws.disconnect()
        await _until(node.gone)
        tg.cancel_scope.cancel()


async def _impostor(api: API, token: str, node_id: str) -> tuple[int, ...]:
    """Register as `node_id` with `token`; the close code the control plane answers with. The
    first receive raises, so nothing came before the close."""
    async with api.app.test_client().websocket(
        "/node/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(_register(node_id))
        with anyio.fail_after(10), pytest.raises(WebsocketDisconnectError) as closed:
            await ws.receive()
    return tuple(closed.value.args)


async def _node_status(api: API, node_id: str) -> str:
    listed = await api.call("GET", "/nodes")
    return str({n["id"]: n["status"] for n in listed.body["items"]}[node_id])


async def test_a_fresh_join_token_cannot_take_over_a_connected_node(
    api: API, caplog: pytest.LogCaptureFixture
) -> None:
    async with _connected(api, await _token(api), "i-victim") as victim:
        created = await api.call("POST", "/session", {"image": "python", "name": "victims"})
        assert created.status == 201, created.body
        assert created.body["status"] == "RUNNING", created.body
        assert any(isinstance(f, wire.CreateKernel) for f in victim.frames)

        with caplog.at_level(logging.WARNING, logger="controlplane.api.node"):
            assert await _impostor(api, await _token(api), "i-victim") == (1008,)
        assert "refused node register: node_id=i-victim credential=join-token" in caplog.text

        # the impostor has left: the real node is still the live one, and its session runs
        assert api.core.hub.get("i-victim") is not None and not victim.closed.is_set()
        assert await _node_status(api, "i-victim") == "ALIVE"
        session = await api.call("GET", "/session/victims")
        assert session.body["status"] == "RUNNING"
        destroyed = await api.call("DELETE", "/session/victims")
        assert destroyed.status == 200, destroyed.body
        assert any(isinstance(f, wire.DestroyKernel) for f in victim.frames)


async def test_the_shared_token_and_join_tokens_cannot_claim_each_others_nodes(
    api: API,
) -> None:
    shared = api.core.config.node_token
    async with _connected(api, shared, "i-local"):
        assert await _impostor(api, await _token(api), "i-local") == (1008,)
    async with _connected(api, await _token(api), "i-remote"):
        assert await _impostor(api, shared, "i-remote") == (1008,)

    async def both_gone() -> bool:
        return api.core.hub.connected() == set()

    await _until(both_gone)
    # known but not connected: still refused
    assert await _impostor(api, await _token(api), "i-local") == (1008,)


async def test_a_node_reconnecting_with_its_credential_replaces_its_old_connection(
    api: API,
) -> None:
    token = await _token(api)
    async with _connected(api, token, "i-flaky") as old:
        old_conn = api.core.hub.get("i-flaky")
        async with _connected(api, token, "i-flaky") as new:

            async def replaced() -> bool:
                return api.core.hub.get("i-flaky") is not old_conn

            await _until(replaced)
            with anyio.fail_after(10):
                await old.closed.wait()  # the control plane hung up the old socket
            # the old connection's end did not take the node with it
            assert await _node_status(api, "i-flaky") == "ALIVE"
            assert not new.closed.is_set()


async def _cpu_is(api: API, node_id: str, cpu: str) -> bool:
    listed = await api.call("GET", "/nodes")
    return {n["id"]: n["availableSlots"]["cpu"] for n in listed.body["items"]}[node_id] == cpu


async def test_a_registered_node_cannot_re_register_as_another(api: API) -> None:
    shared = api.core.config.node_token
    async with _connected(api, shared, "i-other"), _connected(api, shared, "i-sly") as sly:
        await sly.ws.send(_register("i-other", cpu="64"))  # ignored
        await sly.ws.send(_register("i-sly", cpu="3"))  # its own: taken, after the first
        await _until(lambda: _cpu_is(api, "i-sly", "3"))
        assert await _cpu_is(api, "i-other", "2")


async def test_admins_list_and_revoke_join_tokens(api: API) -> None:
    token = await _token(api)
    async with _connected(api, token, "i-revoked") as node:
        listed = await api.call("GET", "/admin/node-tokens")
        assert listed.status == 200
        (item,) = listed.body["items"]
        assert set(item) == {
            "id",
            "createdBy",
            "createdAt",
            "expiresAt",
            "nodeId",
            "usedAt",
            "revokedAt",
        }
        assert item["nodeId"] == "i-revoked" and item["revokedAt"] is None
        assert token not in str(listed.body)

        user = await api.call("POST", "/admin/keypairs", {"user": "u@example.com"})
        keypair = type(api.admin)(user.body["accessKey"], user.body["secretKey"])
        for method, path in (
            ("GET", "/admin/node-tokens"),
            ("DELETE", f"/admin/node-tokens/{item['id']}"),
        ):
            assert (await api.call(method, path, keypair=keypair)).status == 403

        revoked = await api.call("DELETE", f"/admin/node-tokens/{item['id']}")
        assert revoked.status == 200 and revoked.body["revokedAt"]
        with anyio.fail_after(10):
            await node.closed.wait()  # disconnected at once
        assert await _node_status(api, "i-revoked") == "TERMINATED"  # not merely lost

    with anyio.fail_after(10), pytest.raises(WebsocketResponseError) as refused:
        async with api.app.test_client().websocket(
            "/node/connect", headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await ws.receive()
    assert refused.value.response.status_code == 401
    # the machine re-joins under its id with a new token
    async with _connected(api, await _token(api), "i-revoked"):
        assert await _node_status(api, "i-revoked") == "ALIVE"
    missing = await api.call("DELETE", "/admin/node-tokens/nosuchtoken")
    assert missing.status == 404
