"""Control plane fixtures: a Core on a real database (SQLite, and PostgreSQL when configured),
the Quart app driven in-process, signed requests, and a fake node (controlplane.testing)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import wire
from controlplane.api.app import create_app
from controlplane.config import ControlPlaneConfig
from controlplane.core import Core
from controlplane.db.engine import create_engine, dispose
from controlplane.server import running_core
from controlplane.testing import FakeNode

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


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[API]:
    config = ControlPlaneConfig(
        state_dir=tmp_path,
        node_token="t",
        database_url=database_url,
        # a FakeNode sends no heartbeats: a long test on a loaded machine must not lose it
        node_heartbeat_timeout=3600,
    )
    engine = create_engine(config.effective_database_url)
    async with running_core(config, engine) as (core, prepared):
        assert prepared is not None
        admin = Keypair(prepared[0].access_key, prepared[1])
        yield API(create_app(core), core, admin)
    await dispose(engine)


@pytest.fixture
async def node(api: API) -> FakeNode:
    fake = FakeNode(api.core, "i-fake", {"cpu": "2", "mem": str(4 * 2**30)})
    await fake.connect()
    return fake
