"""The node WebSocket (`/node/connect`) as a node sees it: a node of the previous protocol
version (replaying frames captured from it) is served, bad frames get a clear answer and the
link stays up, and a slow database never holds the node's replies or run output."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from quart.testing.connections import TestWebsocketConnection as NodeSocket
from quart.testing.connections import WebsocketDisconnectError
from sqlalchemy import select

import wire
from controlplane import nodecalls, reconcile
from controlplane.db.models import Image, Kernel, Node
from controlplane.errors import NodeUnavailable
from controlplane.runs import RunBuffer
from controlplane.testing import TEST_IMAGE
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parents[1] / "wire" / "fixtures" / "node-1.0-frames.json"
OLD: dict[str, dict[str, Any]] = json.loads(FIXTURE.read_text())["frames"]
NODE_ID = OLD["register"]["node_id"]


def _old(name: str, **changes: Any) -> str:
    """A frame the 1.0 node sent, with the ids of this conversation put in."""
    frame = copy.deepcopy(OLD[name])
    frame.update(changes)
    return json.dumps(frame)


def _register(**changes: Any) -> str:
    frame = copy.deepcopy(OLD["register"])
    frame["images"][0]["name"] = TEST_IMAGE
    frame.update(changes)
    return json.dumps(frame)


async def _image_known(api: API) -> None:
    """A 1.0 node sends no image labels: an admin registers its image, as for any such image."""
    assert (await api.call("POST", "/images", {"name": TEST_IMAGE})).status == 201
    alias = {"alias": "python", "target": TEST_IMAGE}
    assert (await api.call("POST", "/images/aliases", alias)).status == 201


@asynccontextmanager
async def _dial(api: API, first: str, *, registers: bool = True) -> AsyncIterator[NodeSocket]:
    """Connect as a node and send `first`; with `registers`, return once it was recorded."""
    registered = anyio.Event()
    api.core.on_change(registered.set)  # the registration ends by waking the scheduler
    client = api.app.test_client()
    headers = {"Authorization": f"Bearer {api.core.config.node_token}"}
    async with client.websocket("/node/connect", headers=headers) as ws:
        await ws.send(first)
        if registers:
            with anyio.fail_after(10):
                await registered.wait()
        yield ws  # type: ignore[misc]


class OldNode:
    """Answers like the 1.0 node did, with the frames captured from it."""

    def __init__(self, ws: NodeSocket) -> None:
        self.ws = ws
        self.received: list[str] = []  # types of the frames it got, in order

    async def serve(self) -> None:
        while True:
            frame = json.loads(await self.ws.receive())
            self.received.append(frame["type"])
            match frame["type"]:
                case "create_kernel":
                    await self.ws.send(_old("reply:container_id", req_id=frame["req_id"]))
                case "get_logs":
                    await self.ws.send(_old("reply:logs", req_id=frame["req_id"]))
                case "destroy_kernel":
                    await self.ws.send(_old("reply:exit_code", req_id=frame["req_id"]))
                case "upload":
                    await self.ws.send(_old("reply:written", req_id=frame["req_id"]))
                case "execute":
                    for name in ("run_output:stdout", "run_output:stderr", "run_output:finished"):
                        await self.ws.send(_old(name, run_id=frame["run_id"]))


async def test_a_node_one_minor_version_older_is_served(api: API) -> None:
    async with _dial(api, _register()) as ws, anyio.create_task_group() as tg:
        node = OldNode(ws)
        tg.start_soon(node.serve)
        await _image_known(api)
        assert api.core.hub.get(NODE_ID).protocol == (1, 0)

        created = await api.call("POST", "/session", {"image": "python", "name": "old-1"})
        assert created.body["status"] == "RUNNING", created.body
        ran = await api.call("POST", "/session/old-1", {"mode": "query", "code": "x"})
        result = ran.body["result"]
        assert (result["status"], result["exitCode"]) == ("finished", 0)
        assert result["console"] == [["stdout", "hello\n"], ["stderr", "oops\n"]]

        await ws.send(_old("heartbeat"))
        destroyed = await api.call("DELETE", "/session/old-1")
        assert destroyed.status == 200
        # a 1.0 node's destroy answer has no logs: they are read first, as 1.0 did
        assert node.received[-2:] == ["get_logs", "destroy_kernel"]
        logs = await api.call("GET", "/session/old-1/logs")
        assert "hello\noops\nbob\n" in logs.body["result"]["logs"]
        await api.core.writer.drained()
        async with api.core.db() as db:
            row = await db.get(Node, NODE_ID)
            assert row is not None and row.mem_cur_bytes == OLD["heartbeat"]["mem_used_bytes"]
        tg.cancel_scope.cancel()


async def test_kernel_exit_from_an_old_node(api: API) -> None:
    async with _dial(api, _register()) as ws, anyio.create_task_group() as tg:
        node = OldNode(ws)
        tg.start_soon(node.serve)
        await _image_known(api)
        created = await api.call("POST", "/session", {"image": "python", "name": "old-2"})
        session_id = uuid.UUID(created.body["sessionId"])
        async with api.core.db() as db:
            kernel_id = await db.scalar(select(Kernel.id).where(Kernel.session_id == session_id))
        async with api.core.events.subscribe() as events:
            await ws.send(_old("kernel_exited", kernel_id=str(kernel_id)))
            with anyio.fail_after(5):
                event = await events.receive()
        assert (event.session_id, event.status) == (session_id, "ERROR")
        info = await api.call("GET", "/session/old-2")
        assert info.body["statusInfo"] == "the container exited with code 137"
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("frame", "names"),
    [
        ('{"type": "open_tunnel", "port": 22}', "open_tunnel"),
        ('{"type": "heartbeat", "cpu_pct": "lots"}', "heartbeat"),
        ("[1, 2, 3]", "JSON object"),
    ],
)
async def test_a_bad_frame_gets_an_answer_and_the_link_stays_up(
    api: API, frame: str, names: str
) -> None:
    async with _dial(api, _register()) as ws:
        await ws.send(frame)
        with anyio.fail_after(5):
            answer = wire.decode(await ws.receive())
        assert isinstance(answer, wire.FrameRejected)
        assert names in f"{answer.frame_type} {answer.error}"
        # still connected, still served: the next frames are handled, in order
        await ws.send(_old("heartbeat"))
        await ws.send(frame)
        with anyio.fail_after(5):
            assert isinstance(wire.decode(await ws.receive()), wire.FrameRejected)
        await api.core.writer.drained()
        async with api.core.db() as db:
            row = await db.get(Node, NODE_ID)
            assert row is not None and row.mem_cur_bytes == OLD["heartbeat"]["mem_used_bytes"]


async def test_a_bad_reply_fails_its_request_at_once(api: API) -> None:
    async with _dial(api, _register()) as ws, anyio.create_task_group() as tg:

        async def answer_badly() -> None:
            request = json.loads(await ws.receive())
            await ws.send(json.dumps({"type": "reply", "req_id": request["req_id"], "ok": 1}))

        tg.start_soon(answer_badly)
        with anyio.fail_after(5), pytest.raises(NodeUnavailable, match="unreadable reply"):
            await nodecalls.get_logs(api.core.hub, NODE_ID, "k-1")


@pytest.mark.parametrize(
    ("first", "says"),
    [
        (_old("heartbeat"), "register first"),
        ('{"type": "register", "node_id": 5}', "register frame"),
        ("not json", "not JSON"),
    ],
)
async def test_a_connection_that_does_not_register_is_closed_saying_why(
    api: API, first: str, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _dial(api, first, registers=False) as ws:
        with anyio.fail_after(5), pytest.raises(WebsocketDisconnectError) as closed:
            await ws.receive()
    assert closed.value.args[0] == 1002
    assert any(says in r.getMessage() for r in caplog.records)
    assert api.core.hub.connected() == set()


async def test_another_major_version_is_refused(api: API, caplog: pytest.LogCaptureFixture) -> None:
    async with _dial(api, _register(protocol="2.0"), registers=False) as ws:
        with anyio.fail_after(5), pytest.raises(WebsocketDisconnectError):
            await ws.receive()
    assert any("protocol 2.0 is not compatible" in r.getMessage() for r in caplog.records)


async def test_a_slow_database_does_not_hold_run_output(
    api: API, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = anyio.Event()
    writing = anyio.Event()

    async def slow_heartbeat(*args: Any) -> None:
        writing.set()
        await release.wait()  # the database hangs on this write

    monkeypatch.setattr(reconcile, "on_heartbeats", slow_heartbeat)
    async with _dial(api, _register()) as ws:
        buffer = RunBuffer("run-1", NODE_ID)
        api.core.hub.open_run(buffer)
        await ws.send(_old("heartbeat"))
        with anyio.fail_after(5):
            await writing.wait()
        await ws.send(_old("run_output:stdout", run_id="run-1"))
        with anyio.fail_after(2):
            output = await buffer.take()  # arrives while the write still hangs
        assert output.data == "hello\n"
        assert not release.is_set()
        release.set()
        await api.core.writer.drained()


async def test_a_node_counts_as_alive_only_once_its_registration_is_recorded(
    api: API, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /health said "1 node alive" while the node's Register was still being written, and a
    # session created at once found none of its images (the installer's check session did)
    recording, release, recorded = anyio.Event(), anyio.Event(), anyio.Event()
    record = reconcile.on_register

    async def slow_register(*args: Any) -> Any:
        recording.set()
        await release.wait()  # the database is slow to take the registration
        facts = await record(*args)
        recorded.set()  # the handler goes on without waiting on anything before it reads
        return facts

    monkeypatch.setattr(reconcile, "on_register", slow_register)
    async with _dial(api, _register(), registers=False):
        with anyio.fail_after(5):
            await recording.wait()
        assert (await api.call("GET", "/health")).body["nodesAlive"] == 0
        assert api.core.hub.get(NODE_ID)  # attached all the same: it can be sent requests
        release.set()
        with anyio.fail_after(10):
            await recorded.wait()
        assert (await api.call("GET", "/health")).body["nodesAlive"] == 1
        async with api.core.db() as db:  # by then what it reported is recorded
            assert await db.get(Image, (NODE_ID, TEST_IMAGE)) is not None
