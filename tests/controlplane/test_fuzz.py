"""Schemathesis against /openapi.json of a live control plane (issue 7 item 8): every operation
gets generated requests, signed like a real client's, and every answer must be no 5xx and
match the schema the document gives for it.

The control plane runs in a thread with its own event loop on 127.0.0.1, with a fake node of
unbounded capacity so that a generated session that does start never waits for room.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
import requests
import schemathesis
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

import wire
from controlplane.api.app import create_app
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import create_engine
from controlplane.server import running_core
from controlplane.testing import FakeNode

EXAMPLES_PER_OPERATION = 12
# a stream that lasts as long as the client listens: nothing to fuzz with a request/response tool
SKIPPED = {("GET", "/events/session")}


class Signed(requests.auth.AuthBase):
    """Signs each request exactly as it will be sent (docs/backendai-api.md §3)."""

    def __init__(self, access_key: str, secret_key: str) -> None:
        self.access_key, self.secret_key = access_key, secret_key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urllib.parse.urlsplit(r.url or "")
        target = url.path + (f"?{url.query}" if url.query else "")
        content_type = str(r.headers.get("Content-Type") or "application/octet-stream")
        date = datetime.now(UTC).isoformat()
        signature = wire.sign(
            method=r.method or "GET",
            rel_url=target,
            date=date,
            host=url.netloc,
            content_type=content_type.split(";", 1)[0].strip().lower(),
            version=wire.API_VERSION,
            secret_key=self.secret_key,
        )
        r.headers["Date"] = date
        r.headers["X-BackendAI-Version"] = wire.API_VERSION
        r.headers["Authorization"] = wire.authorization_header(self.access_key, signature)
        return r


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, Signed]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    ready: list[Signed] = []
    started, stop = threading.Event(), threading.Event()

    async def run() -> None:
        config = ControlPlaneConfig(
            state_dir=tmp_path, node_token="t", database_url=f"sqlite+aiosqlite:///{tmp_path}/f.db"
        )
        engine = create_engine(config.effective_database_url)
        hconfig = HypercornConfig()
        hconfig.bind = [f"fd://{os.dup(listener.fileno())}"]  # hypercorn closes what it serves
        hconfig.accesslog = None
        async with running_core(config, engine) as (core, prepared):
            assert prepared is not None
            admin, secret, _password = prepared
            await FakeNode(core, "i-fuzz", {"cpu": "1000000", "mem": str(2**60)}).connect()
            ready.append(Signed(admin.access_key, secret))
            started.set()
            await serve(
                create_app(core),
                hconfig,
                shutdown_trigger=lambda: anyio.to_thread.run_sync(stop.wait),
            )  # type: ignore[arg-type]
        await engine.dispose()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(30), "the control plane did not start"
    try:
        yield base, ready[0]
    finally:
        stop.set()
        thread.join(30)
        listener.close()


def test_fuzz_every_operation(live: tuple[str, Signed]) -> None:
    base, auth = live
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    cases: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, auth=auth, timeout=30)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )
            label = f"{case.operation.method.upper()} {case.operation.path}"
            cases[label] = cases.get(label, 0) + 1

        check()
    print(f"schemathesis: {sum(cases.values())} cases over {len(cases)} operations")
    assert len(cases) == len(operations) - len(SKIPPED)
