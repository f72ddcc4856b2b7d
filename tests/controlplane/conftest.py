"""Control plane fixtures: a Core on a real database (SQLite, and PostgreSQL when configured),
the Quart app driven in-process, signed requests, and a fake node for scheduling tests."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import wire
from controlplane import reconcile
from controlplane.api.app import create_app
from controlplane.config import ControlPlaneConfig
from controlplane.core import Core
from controlplane.db.engine import create_engine
from controlplane.nodehub import NodeConnection
from controlplane.server import running_core

TEST_IMAGE = "shipyard-test/python:3.11"
HOST = "localhost"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _postgres_dsn() -> str | None:
    dsn = os.environ.get("SHIPYARD_TEST_POSTGRES_DSN")
    if not dsn and os.environ.get("CI"):
        raise RuntimeError("CI must test PostgreSQL: ./dev test sets SHIPYARD_TEST_POSTGRES_DSN")
    return dsn


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
        return
    dsn = _postgres_dsn()
    if dsn is None:
        pytest.skip("set SHIPYARD_TEST_POSTGRES_DSN (./dev test does) to test PostgreSQL")
    engine = create_async_engine(dsn)
    async with engine.begin() as conn:  # a clean schema for every test
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    yield dsn


@dataclass(frozen=True)
class Keypair:
    """What a keypair's owner signs requests with (the database keeps the secret sealed)."""

    access_key: str
    secret_key: str


@dataclass
class Response:
    status: int
    content_type: str
    body: Any


@dataclass
class API:
    app: Quart
    core: Core
    admin: Keypair

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        keypair: Keypair | None = None,
        date: datetime | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        secret: str | None = None,
    ) -> Response:
        keypair = keypair or self.admin
        date_text = (date or datetime.now(UTC)).isoformat()
        content = (
            raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        )
        content_type = "application/json" if raw is not None or body is not None else "text/plain"
        signature = wire.sign(
            method=method,
            rel_url=path,
            date=date_text,
            host=HOST,
            content_type=content_type,
            version=wire.API_VERSION,
            secret_key=secret or keypair.secret_key,
        )
        all_headers = {
            "Date": date_text,
            "X-BackendAI-Version": wire.API_VERSION,
            "Content-Type": content_type,
            "Authorization": wire.authorization_header(keypair.access_key, signature),
            **(headers or {}),
        }
        client = self.app.test_client()
        response = await client.open(path, method=method, headers=all_headers, data=content)
        data = await response.get_data()
        return Response(
            response.status_code,
            response.content_type or "",
            json.loads(data) if data else None,
        )

    def ws_headers(self, path: str, keypair: Keypair | None = None) -> dict[str, str]:
        """Headers of a signed WebSocket upgrade (no Content-Type: signed as octet-stream)."""
        keypair = keypair or self.admin
        date_text = datetime.now(UTC).isoformat()
        signature = wire.sign(
            method="GET",
            rel_url=path,
            date=date_text,
            host=HOST,
            content_type="application/octet-stream",
            version=wire.API_VERSION,
            secret_key=keypair.secret_key,
        )
        return {
            "Date": date_text,
            "X-BackendAI-Version": wire.API_VERSION,
            "Authorization": wire.authorization_header(keypair.access_key, signature),
        }


@dataclass
class FakeNode:
    """A node that answers like a real one but starts no containers (scheduler tests only).

    `hold_runs`: Execute gets no output until the kernel is destroyed (then it ends, as a real
    run does when its container goes). `on_create`: awaited (in the background) before the
    CreateKernel reply, to put something in the middle of a session start;
    `die_after_create`: the node is killed right after that reply.
    """

    core: Core
    node_id: str
    slots: dict[str, str]
    kernels: dict[str, str] = field(default_factory=dict)  # kernel id -> session id
    architecture: str = "x86_64"
    hold_runs: bool = False
    on_create: Callable[[], Awaitable[None]] | None = None
    die_after_create: bool = False
    died: bool = False
    runs: dict[str, str] = field(default_factory=dict)  # held run id -> kernel id
    inputs: list[wire.Input] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def connect(self, kernels: list[wire.KernelInfo] | None = None) -> NodeConnection:
        """Connect and register, reporting `kernels` (none by default)."""
        conn = NodeConnection(self.node_id, self._receive)
        self.conn = conn
        self.died = False
        self.core.hub.attach(conn)
        await reconcile.on_register(self.core, self.register_message(kernels))
        return conn

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, re-checked after every frame the node receives."""
        with anyio.fail_after(10):
            while not condition():
                await self._changed.wait()

    def die(self) -> None:
        """The node process is killed: its connection drops, nothing more is answered."""
        self.died = True
        self.core.hub.detach(self.conn)

    def register_message(self, kernels: list[wire.KernelInfo] | None = None) -> wire.Register:
        return wire.Register(
            node_id=self.node_id,
            version="test",
            architecture=self.architecture,
            network_mode="none",
            slots=self.slots,
            images=[
                wire.ImageInfo(
                    TEST_IMAGE,
                    "sha256:test",
                    1000,
                    self.architecture,
                    ["python"],
                    {"ai.shipyard.kernel": "1", "ai.shipyard.recipe.revision": "2"},
                )
            ],
            kernels=kernels or [],
            protocol=wire.PROTOCOL,
        )

    def _reply(self, req_id: str, result: wire.Result) -> None:
        self.conn.deliver_reply(wire.Reply(req_id, True, wire.result_dict(result)))

    async def _receive(self, frame: str) -> None:
        try:
            self._handle(frame)
        finally:
            self._changed.set()
            self._changed = anyio.Event()

    def _handle(self, frame: str) -> None:
        message = wire.decode(frame)  # what a real node would read
        match message:
            case wire.CreateKernel() if self.on_create is not None:
                self.core.spawn(self._create_later, message)
            case wire.CreateKernel():
                self.kernels[message.kernel_id] = message.session_id
                self._reply(message.req_id, wire.KernelCreated(uuid.uuid4().hex))
            case wire.DestroyKernel():
                existed = self.kernels.pop(message.kernel_id, None) is not None
                for run_id, kernel_id in list(self.runs.items()):
                    if kernel_id == message.kernel_id:
                        self.output(wire.RunOutput(run_id, "finished", exit_code=137))
                logs = "fake logs\n" if existed else None
                self._reply(message.req_id, wire.KernelDestroyed(0 if existed else None, logs))
            case wire.GetLogs():
                self._reply(message.req_id, wire.KernelLogs("fake logs\n"))
            case wire.Input():
                self.inputs.append(message)
            case wire.Execute() if self.hold_runs:
                self.runs[message.run_id] = message.kernel_id
            case wire.Execute():
                self.output(wire.RunOutput(message.run_id, "stdout", "ran\n"))
                self.output(wire.RunOutput(message.run_id, "finished", exit_code=0))

    def output(self, output: wire.RunOutput) -> None:
        # through the wire encoding too, as the control plane receives it
        decoded = wire.decode(wire.encode(output))
        assert isinstance(decoded, wire.RunOutput)
        self.core.hub.deliver_output(decoded)

    async def _create_later(self, message: wire.CreateKernel) -> None:
        assert self.on_create is not None
        await self.on_create()
        if not self.died:
            self.kernels[message.kernel_id] = message.session_id
            self._reply(message.req_id, wire.KernelCreated(uuid.uuid4().hex))
            if self.die_after_create:
                self.die()


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[API]:
    config = ControlPlaneConfig(state_dir=tmp_path, node_token="t", database_url=database_url)
    engine = create_engine(config.effective_database_url)
    async with running_core(config, engine) as (core, prepared):
        assert prepared is not None
        admin = Keypair(prepared[0].access_key, prepared[1])
        yield API(create_app(core), core, admin)
    await engine.dispose()


@pytest.fixture
async def node(api: API) -> FakeNode:
    fake = FakeNode(api.core, "i-fake", {"cpu": "2", "mem": str(4 * 2**30)})
    await fake.connect()
    return fake
