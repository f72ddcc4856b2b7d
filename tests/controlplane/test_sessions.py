"""Session creation, validation, owner scoping and scheduling against a fake node."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select

import wire
from controlplane import reconcile
from controlplane.db.models import Session
from controlplane.testing import TEST_IMAGE, FakeNode
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


async def _count_sessions(api: API) -> int:
    async with api.core.db() as db:
        return int(await db.scalar(select(func.count()).select_from(Session)) or 0)


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"image": "python", "name": "sess-1", "config": {}}
    body.update(overrides)
    return body


async def _user(api: API, email: str) -> Any:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    return type(api.admin)(
        access_key=created.body["accessKey"], secret_key=created.body["secretKey"]
    )


async def test_create_runs_and_destroy(api: API, node: FakeNode) -> None:
    created = await api.call(
        "POST", "/session", _body(config={"resources": {"cpu": "1", "mem": "256m"}})
    )
    assert created.status == 201
    assert created.body["status"] == "RUNNING"
    assert created.body["created"] is True
    session_id = created.body["sessionId"]
    info = await api.call("GET", f"/session/{session_id}")
    assert info.body["sessionName"] == "sess-1"
    assert info.body["image"] == TEST_IMAGE  # the alias was resolved server-side
    assert info.body["requestedSlots"] == {"cpu": "1", "mem": str(256 * 2**20)}
    assert [h["status"] for h in info.body["statusHistory"]] == [
        "PENDING",
        "SCHEDULED",
        "PREPARING",
        "RUNNING",
    ]
    assert all(h["reason"] for h in info.body["statusHistory"])
    # the create's answer says why as the session does (told by the events, not read again)
    assert created.body["statusInfo"] == info.body["statusInfo"]
    assert re.fullmatch(r"container [0-9a-f]{12} on i-fake", created.body["statusInfo"])
    by_name = await api.call("GET", "/session/sess-1")
    assert by_name.body["sessionId"] == session_id
    destroyed = await api.call("DELETE", "/session/sess-1")
    assert (destroyed.status, destroyed.body) == (200, {"stats": {"status": "terminated"}})
    assert node.kernels == {}
    logs = await api.call("GET", "/session/sess-1/logs")
    assert logs.body == {"result": {"logs": "fake logs\n"}}  # kept after the container went


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        (_body(name="a"), 400, "invalid-api-params"),
        (_body(name="bad name!"), 400, "invalid-api-params"),
        (_body(image="no-such-image"), 404, "object-not-found"),
        (_body(config={"resources": {"cpu": "64"}}), 400, "invalid-api-params"),
        (_body(config={"resources": {"mem": "1t"}}), 400, "invalid-api-params"),
        (_body(config={"resources": {"gpu": "1"}}), 400, "invalid-api-params"),
        (_body(config={"resources": {"mem": "lots"}}), 400, "invalid-api-params"),
        (_body(config={"resources": {"mem": "1m"}}), 400, "invalid-api-params"),
        (_body(type="batch"), 400, "invalid-api-params"),
        (_body(type="sideways"), 400, "invalid-api-params"),
        ([1, 2, 3], 400, "invalid-api-params"),
    ],
)
async def test_bad_create_requests_leave_nothing_behind(
    api: API, node: FakeNode, body: Any, status: int, slug: str
) -> None:
    response = await api.call("POST", "/session", body)
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert response.body["type"].endswith("/" + slug)
    assert response.body.get("msg")
    assert await _count_sessions(api) == 0
    assert node.kernels == {}


async def test_malformed_json(api: API, node: FakeNode) -> None:
    response = await api.call("POST", "/session", raw=b'{"image": "python",')
    assert response.status == 400
    assert "Malformed JSON" in response.body["msg"]
    assert await _count_sessions(api) == 0


async def test_unsatisfiable_names_the_largest_node(api: API, node: FakeNode) -> None:
    response = await api.call("POST", "/session", _body(config={"resources": {"cpu": "64"}}))
    assert "i-fake" in response.body["msg"]
    assert "cpu=64" in response.body["msg"]


async def test_another_keypairs_session_is_invisible(api: API, node: FakeNode) -> None:
    created = await api.call("POST", "/session", _body())
    frank = await _user(api, "frank@example.com")
    for method, path in [
        ("GET", f"/session/{created.body['sessionId']}"),
        ("GET", "/session/sess-1"),
        ("DELETE", "/session/sess-1"),
        ("GET", "/session/sess-1/logs"),
    ]:
        response = await api.call(method, path, keypair=frank)
        assert response.status == 404, path
        assert response.body["title"] == "No such session."
    mine = await api.call("GET", "/session", keypair=frank)
    assert mine.body == {"items": []}
    still = await api.call("GET", "/session/sess-1")
    assert still.body["status"] == "RUNNING"


async def test_same_name_reuse_or_refuse(api: API, node: FakeNode) -> None:
    first = await api.call("POST", "/session", _body())
    again = await api.call("POST", "/session", _body(reuseIfExists=True))
    assert again.status == 201
    assert again.body["created"] is False
    assert again.body["sessionId"] == first.body["sessionId"]
    refused = await api.call("POST", "/session", _body(reuseIfExists=False))
    assert refused.status == 400
    assert refused.body["type"].endswith("/session-already-exists")
    assert refused.body["data"] == {"existingSessionId": first.body["sessionId"]}
    assert await _count_sessions(api) == 1


async def test_pending_until_room_appears(api: API, node: FakeNode) -> None:
    big = await api.call(
        "POST", "/session", _body(name="big-1", config={"resources": {"cpu": "2"}})
    )
    assert big.body["status"] == "RUNNING"
    async with api.core.events.subscribe() as events:
        waiting = await api.call(
            "POST",
            "/session",
            _body(name="small-1", enqueueOnly=True, config={"resources": {"cpu": "1"}}),
        )
        assert waiting.body["status"] == "PENDING"
        with anyio.fail_after(5):
            async for event in events:
                if event.session_name == "small-1" and event.reason.startswith("waiting"):
                    break
    info = await api.call("GET", "/session/small-1")
    assert info.body["status"] == "PENDING"
    assert "waiting for resources" in info.body["statusInfo"]
    assert "short of cpu" in info.body["statusInfo"]
    async with api.core.events.subscribe() as events:
        await api.call("DELETE", "/session/big-1")
        with anyio.fail_after(5):
            async for event in events:
                if event.session_name == "small-1" and event.status == "RUNNING":
                    break
    info = await api.call("GET", "/session/small-1")
    assert info.body["status"] == "RUNNING"
    assert info.body["node"] == "i-fake"


async def test_max_wait_times_out_while_pending(api: API, node: FakeNode) -> None:
    await api.call("POST", "/session", _body(name="big-1", config={"resources": {"cpu": "2"}}))
    response = await api.call(
        "POST",
        "/session",
        _body(name="late-1", maxWaitSeconds=0.2, config={"resources": {"cpu": "1"}}),
    )
    assert response.body["status"] == "TIMEOUT"
    cancelled = await api.call("DELETE", "/session/late-1")
    assert cancelled.body == {"stats": {"status": "cancelled"}}


async def test_http_execute(api: API, node: FakeNode) -> None:
    await api.call("POST", "/session", _body())
    response = await api.call(
        "POST", "/session/sess-1", {"mode": "query", "code": "x", "runId": None}
    )
    result = response.body["result"]
    assert result["status"] == "finished"
    assert result["console"] == [["stdout", "ran\n"]]
    assert result["exitCode"] == 0


async def test_reconcile_marks_oom_and_vanished_kernels(api: API, node: FakeNode) -> None:
    await api.call("POST", "/session", _body(name="oom-1", config={"resources": {"mem": "128m"}}))
    await api.call("POST", "/session", _body(name="gone-1"))
    (oom_kernel,) = [
        k
        for k, s in node.kernels.items()
        if s == (await api.call("GET", "/session/oom-1")).body["sessionId"]
    ]
    report = node.register_message(
        [
            wire.KernelInfo(
                oom_kernel,
                node.kernels[oom_kernel],
                "c1",
                running=False,
                exit_code=137,
                oom_killed=True,
            )
        ]
    )
    await reconcile.on_register(api.core, report)
    oom = await api.call("GET", "/session/oom-1")
    assert oom.body["status"] == "ERROR"
    assert oom.body["statusInfo"] == "killed: out of memory (memory limit 128 MiB)"
    gone = await api.call("GET", "/session/gone-1")
    assert gone.body["status"] == "ERROR"
    assert "vanished" in gone.body["statusInfo"]


async def test_kernel_exit_while_running(api: API, node: FakeNode) -> None:
    created = await api.call("POST", "/session", _body(config={"resources": {"mem": "128m"}}))
    (kernel_id,) = node.kernels
    await reconcile.on_kernel_exited(
        api.core, "i-fake", wire.KernelExited(kernel_id, 137, True, "killed: out of memory")
    )
    info = await api.call("GET", f"/session/{created.body['sessionId']}")
    assert info.body["status"] == "ERROR"
    assert "out of memory" in info.body["statusInfo"]
    assert info.body["statusData"]["oom_killed"] is True
    run = await api.call("POST", "/session/sess-1", {"mode": "query", "code": "1"})
    assert run.status == 409
    assert "out of memory" in run.body["msg"]


async def test_images_and_aliases(api: API, node: FakeNode) -> None:
    listing = await api.call("GET", "/images")
    assert listing.body["items"] == [
        {
            "name": TEST_IMAGE,
            "digest": "sha256:test",
            "sizeBytes": 1000,
            "architecture": "x86_64",
            "source": "recipe",
            "labels": {"ai.shipyard.kernel": "1", "ai.shipyard.recipe.revision": "2"},
            "aliases": ["python"],
            "nodes": ["i-fake"],
        }
    ]
    assert (
        await api.call("POST", "/images/aliases", {"alias": "py", "target": "python"})
    ).status == 201
    created = await api.call("POST", "/session", _body(image="py"))
    assert created.status == 201
    bad = await api.call("POST", "/images/aliases", {"alias": "x", "target": "nope:1"})
    assert bad.status == 404
    assert (await api.call("DELETE", "/images/aliases/py")).status == 200
    assert (await api.call("POST", "/session", _body(name="other", image="py"))).status == 404
