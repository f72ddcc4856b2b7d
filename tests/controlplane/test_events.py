"""GET /events/session: Backend.AI's event names and data, and server_close once the watched
session is gone (controlplane/api/events.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

import wire
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API, HOST

pytestmark = pytest.mark.anyio


def _signed(api: API, target: str) -> dict[str, str]:
    """Headers as the official client sends them on SSE: signed as application/octet-stream,
    with no Content-Type header."""
    date = datetime.now(UTC).isoformat()
    signature = wire.sign(
        method="GET",
        rel_url=target,
        date=date,
        host=HOST,
        content_type="application/octet-stream",
        version=wire.API_VERSION,
        secret_key=api.admin.secret_key,
    )
    return {
        "Date": date,
        "X-BackendAI-Version": wire.API_VERSION,
        "Authorization": wire.authorization_header(api.admin.access_key, signature),
    }


def _parse(raw: bytes) -> list[tuple[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def _listen(api: API, target: str, during: Any = None) -> tuple[int, list[tuple[str, Any]]]:
    """Open the stream, run `during` once it listens, read until server_close (10 s at most)."""
    subscribers = len(api.core.events._subscribers)
    raw = b""
    async with api.app.test_client().request(target, headers=_signed(api, target)) as conn:
        await conn.send_complete()
        with anyio.fail_after(10):
            if during is not None:
                # the stream subscribes when its body starts; nothing announces that
                while len(api.core.events._subscribers) == subscribers:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                await during()
            while b"event: server_close" not in raw:
                raw += await conn.receive()
    assert conn.headers is not None
    assert conn.headers["Content-Type"].startswith("text/event-stream")
    assert conn.status_code is not None
    return conn.status_code, _parse(raw)


async def _create(api: API, name: str) -> str:
    created = await api.call("POST", "/session", {"image": "python", "name": name})
    assert created.status == 201, created.body
    session_id: str = created.body["sessionId"]
    return session_id


async def test_destroy_streams_the_end_and_server_close(api: API, node: FakeNode) -> None:
    session_id = await _create(api, "watched-1")

    async def destroy() -> None:
        assert (await api.call("DELETE", "/session/watched-1")).status == 200

    status, events = await _listen(api, f"/events/session?sessionId={session_id}&scope=*", destroy)
    assert status == 200
    assert [name for name, _ in events] == [
        "kernel_terminating",
        "session_terminating",
        "kernel_terminated",
        "session_terminated",
        "server_close",
    ]
    assert events[3][1] == {
        "reason": "terminated by the user",
        "sessionName": "watched-1",
        "ownerAccessKey": api.admin.access_key,
        "sessionId": session_id,
        "exitCode": None,
    }
    kernel_data = events[2][1]
    assert kernel_data["kernelId"] and kernel_data["clusterRole"] == "main"
    assert events[-1][1] == {}


async def test_scope_and_name_and_an_already_gone_session(api: API, node: FakeNode) -> None:
    await _create(api, "watched-2")
    assert (await api.call("DELETE", "/session/watched-2")).status == 200
    # the client asks by name when it was given one; a dead session ends the stream at once
    status, events = await _listen(api, "/events/session?sessionName=watched-2&scope=session")
    assert status == 200
    assert [name for name, _ in events] == ["session_terminated", "server_close"]


async def test_unknown_session_and_bad_scope_are_problems(api: API) -> None:
    missing = await api.call("GET", "/events/session?sessionName=nosuch&scope=*")
    assert (missing.status, missing.body["title"]) == (404, "No such session.")
    assert missing.content_type == "application/problem+json"
    bad = await api.call("GET", "/events/session?sessionName=nosuch&scope=everything")
    assert (bad.status, bad.body["type"]) == (
        400,
        "https://api.backend.ai/probs/invalid-api-params",
    )


async def _until_reason(events: Any, text: str) -> None:
    with anyio.fail_after(10):
        while True:
            event = await events.receive()
            if event.status == "PENDING" and text in (event.reason or ""):
                return


async def test_a_pending_session_streams_each_new_reason(api: API, node: FakeNode) -> None:
    # the node has cpu=2: two fillers take it all, so the waiter (cpu=2) cannot be placed
    for filler in ("filler-1", "filler-2"):
        body = {"image": "python", "name": filler, "config": {"resources": {"cpu": "1"}}}
        assert (await api.call("POST", "/session", body)).status == 201
    async with api.core.events.subscribe() as scheduled:
        body = {"image": "python", "name": "waiter", "enqueueOnly": True}
        created = await api.call(
            "POST", "/session", {**body, "config": {"resources": {"cpu": "2"}}}
        )
        assert created.body["status"] == "PENDING"
        await _until_reason(scheduled, "has cpu=0 ")

        async def free_one_then_cancel() -> None:
            assert (await api.call("DELETE", "/session/filler-1")).status == 200
            await _until_reason(scheduled, "has cpu=1 ")
            assert (await api.call("DELETE", "/session/waiter")).status == 200

        target = "/events/session?sessionName=waiter&scope=session"
        status, events = await _listen(api, target, free_one_then_cancel)
    assert status == 200
    assert [name for name, _ in events] == [
        "session_enqueued",  # the stream opened on a pending session: why it waits
        "session_enqueued",  # a new reason
        "session_cancelled",
        "server_close",
    ]
    first, second = events[0][1]["reason"], events[1][1]["reason"]
    assert first.startswith("waiting for resources: needs cpu=2") and "has cpu=0 " in first
    assert second.startswith("waiting for resources: needs cpu=2") and "has cpu=1 " in second
    assert events[0][1]["sessionId"] == created.body["sessionId"]
