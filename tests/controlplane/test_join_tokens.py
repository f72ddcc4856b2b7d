"""Join tokens: an admin makes one; a node on another machine dials in with it; the first node
to register binds it; an unused one expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from sqlalchemy import select

import wire
from controlplane import jointokens
from controlplane.db.models import JoinToken
from controlplane.errors import AuthFailed
from controlplane.testing import TEST_IMAGE
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


async def _token(api: API, body: Any = None) -> dict[str, Any]:
    response = await api.call("POST", "/admin/node-tokens", body)
    assert response.status == 201, response.body
    return dict(response.body)


def _register(node_id: str) -> str:
    return wire.encode(
        wire.Register(
            node_id=node_id,
            version="test",
            architecture="x86_64",
            network_mode="none",
            slots={"cpu": "1", "mem": str(2**30)},
            images=[wire.ImageInfo(TEST_IMAGE, "sha256:x", 1, "x86_64", [])],
            kernels=[],
        )
    )


async def _dial(api: API, token: str, node_id: str) -> None:
    """Connect as a node with `token`, register as `node_id`, wait until the control plane
    has it, hang up."""
    client = api.app.test_client()
    async with client.websocket(
        "/node/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(_register(node_id))
        for _ in range(1000):  # 10 s
            if node_id in api.core.hub.connected():
                return
            await anyio.sleep(0.01)
        raise AssertionError(f"{node_id} did not get through")


async def test_an_admin_creates_a_token_and_only_its_hash_is_kept(api: API) -> None:
    created = await _token(api, {"ttl": 3600})
    token = created["token"]
    assert token.startswith("syj_") and len(token) > 40
    expires = datetime.fromisoformat(created["expiresAt"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    async with api.core.db() as db:
        (row,) = list(await db.scalars(select(JoinToken)))
    assert token not in (row.token_hash, row.created_by) and len(row.token_hash) == 64
    assert row.created_by == api.admin.access_key and row.node_id is None
    default = await _token(api)  # no body: 24 hours
    assert datetime.fromisoformat(default["expiresAt"]) - datetime.now(UTC) > timedelta(hours=23)


async def test_only_admins_make_tokens_and_the_ttl_is_checked(api: API) -> None:
    user = await api.call("POST", "/admin/keypairs", {"user": "u@example.com"})
    keypair = type(api.admin)(access_key=user.body["accessKey"], secret_key=user.body["secretKey"])
    response = await api.call("POST", "/admin/node-tokens", {}, keypair=keypair)
    assert response.status == 403
    for bad in ({"ttl": "1h"}, {"ttl": 5}, {"ttl": 10**9}, [1]):
        response = await api.call("POST", "/admin/node-tokens", bad)
        assert response.status == 400, bad
        assert response.body["msg"]


async def test_a_node_joins_with_a_token_and_keeps_it(api: API) -> None:
    token = (await _token(api))["token"]
    await _dial(api, token, "i-joined")
    async with api.core.db() as db:
        (row,) = list(await db.scalars(select(JoinToken)))
        assert row.node_id == "i-joined" and row.used_at is not None
        # once bound it outlives its expiry: the node reconnects with it for as long as it lives
        row.expires_at = datetime.now(UTC) - timedelta(days=1)
        await db.commit()
    await _dial(api, token, "i-joined")
    # the same token for another node: refused once it says who it is
    async with api.app.test_client().websocket(
        "/node/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(_register("i-impostor"))
        with anyio.fail_after(10), pytest.raises(WebsocketDisconnectError) as closed:
            await ws.receive()
    assert closed.value.args == (1008,)  # policy violation
    assert "i-impostor" not in api.core.hub.connected()


async def test_unknown_and_expired_tokens_are_refused(api: API) -> None:
    for token in ("syj_not-a-token", "some-other-secret"):
        with anyio.fail_after(10), pytest.raises(WebsocketResponseError) as caught:
            async with api.app.test_client().websocket(
                "/node/connect", headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                await ws.receive()
        assert caught.value.response.status_code == 401
    async with api.core.db() as db:
        token, _ = await jointokens.create(db, created_by="admin", ttl=timedelta(minutes=1))
        row = await db.get(JoinToken, jointokens._hash(token))
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        await db.commit()
    async with api.core.db() as db:
        with pytest.raises(AuthFailed, match=r"expired at .*shipyard node token create"):
            await jointokens.admit(db, token)


async def test_the_shared_node_token_still_works(api: API) -> None:
    await _dial(api, api.core.config.node_token, "i-local")
