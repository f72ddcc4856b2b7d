"""Batch pipelines (issue 11 item 6, controlplane/pipelines.py): `--depends` starts a session
after its dependencies succeeded and cancels it, with the reason, when one did not;
`--starts-at` holds a batch session until its time, on a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import pytest

import wire
from controlplane import lifecycle
from controlplane.pipelines import parse_starts_at
from controlplane.scheduler import Scheduler
from controlplane.testing import FakeNode, ManualClock
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


async def _status(api: API, name: str) -> tuple[str, str]:
    info = await api.call("GET", f"/session/{name}")
    return info.body["status"], info.body["statusInfo"]


async def _until(api: API, name: str, status: str) -> str:
    """Wait (bounded) for the session to reach `status`; its status_info then."""
    async with api.core.events.subscribe() as events:
        with anyio.fail_after(10):
            current = await _status(api, name)
            while current[0] != status:
                await events.receive()
                current = await _status(api, name)
    return current[1]


async def _one_pass(api: API) -> None:
    """A scheduling pass, awaited (the server's scheduler runs the same in the background)."""
    await Scheduler(api.core, on_placed=partial(lifecycle.start_placed, api.core)).schedule_once()


async def _create(api: API, name: str, **extra: object) -> dict[str, object]:
    body = {"image": "python", "name": name, "config": {"resources": {"cpu": "0.5"}}, **extra}
    created = await api.call("POST", "/session", body)
    assert created.status == 201, created.body
    return dict(created.body)


async def _batch(api: API, name: str, **extra: object) -> None:
    await _create(api, name, type="batch", startupCommand="python train.py", **extra)


async def test_b_starts_after_a_succeeds(api: API, node: FakeNode) -> None:
    node.hold_runs = True
    await _batch(api, "job-a")
    await _until(api, "job-a", "RUNNING")
    created = await _create(api, "job-b", dependencies=["job-a"], enqueueOnly=True)
    await _one_pass(api)  # leaves job-b alone while job-a runs, saying so
    waiting = ("PENDING", "waiting for dependencies to succeed: job-a")
    assert await _status(api, "job-b") == waiting

    [run] = node.runs
    node.output(wire.RunOutput(run, "finished", exit_code=0))
    await _until(api, "job-a", "TERMINATED")
    await _until(api, "job-b", "RUNNING")
    query = "query($id: UUID!) { compute_session(id: $id) { dependencies { name } } }"
    variables = {"id": created["sessionId"]}
    gql = await api.call("POST", "/admin/gql", {"query": query, "variables": variables})
    assert gql.body["data"]["compute_session"]["dependencies"] == [{"name": "job-a"}]


async def test_a_failed_dependency_cancels_with_the_reason(api: API, node: FakeNode) -> None:
    node.hold_runs = True
    await _batch(api, "fail-a")
    await _until(api, "fail-a", "RUNNING")
    await _batch(api, "fail-b", dependencies=["fail-a"], enqueueOnly=True)
    await _create(api, "fail-c", dependencies=["fail-b"], enqueueOnly=True)  # in turn
    [run] = node.runs
    node.output(wire.RunOutput(run, "finished", exit_code=3))
    reason = await _until(api, "fail-b", "CANCELLED")
    assert reason == (
        "dependency fail-a did not succeed (the startup command failed with exit code 3)"
    )
    assert (await _until(api, "fail-c", "CANCELLED")).startswith("dependency fail-b did not")


async def test_starts_at_holds_until_the_clock_says(api: API, node: FakeNode) -> None:
    clock = ManualClock(T0)
    api.core.activity.clock = clock
    await _batch(api, "later-1", starts_at="1h", enqueueOnly=True)
    await _one_pass(api)
    reason = "scheduled to start at 2026-11-28T13:00:00+00:00"
    assert await _status(api, "later-1") == ("PENDING", reason)
    clock.advance(59 * 60)
    await _one_pass(api)
    assert (await _status(api, "later-1"))[0] == "PENDING"
    clock.advance(60)  # one hour after the create
    api.core.changed()
    await _until(api, "later-1", "TERMINATED")  # ran (FakeNode finishes at once) and ended
    info = await api.call("GET", "/session/later-1")
    assert info.body["result"] == "SUCCESS"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"dependencies": ["nobody"]}, "Unknown session ID or name in the dependency list"),
        ({"type": "interactive", "starts_at": "1h"}, "Input validation error"),
        ({"starts_at": "next tuesday"}, "neither an ISO 8601 time"),
        ({"dependencies": "job-a"}, "Input validation error"),
    ],
)
async def test_bad_pipeline_requests_are_400_and_create_nothing(
    api: API, node: FakeNode, extra: dict[str, object], message: str
) -> None:
    body = {"image": "python", "name": "bad-1", "type": "batch", "startupCommand": "x", **extra}
    response = await api.call("POST", "/session", body)
    assert response.status == 400, response.body
    assert message in response.body["msg"]
    assert (await api.call("GET", "/session/bad-1")).status == 404


def test_starts_at_formats() -> None:
    assert parse_starts_at("2026-11-28T15:00:00+00:00", T0) == T0 + timedelta(hours=3)
    assert parse_starts_at("2026-11-28T15:00:00", T0) == T0 + timedelta(hours=3)
    assert parse_starts_at("30m", T0) == T0 + timedelta(minutes=30)
    assert parse_starts_at("1d1hr", T0) == T0 + timedelta(days=1, hours=1)
    assert parse_starts_at("2hours 15min", T0) == T0 + timedelta(hours=2, minutes=15)
    assert parse_starts_at("20sec", T0) == T0 + timedelta(seconds=20)
    assert parse_starts_at("90", T0) == T0 + timedelta(seconds=90)
    with pytest.raises(ValueError):
        parse_starts_at("soon", T0)
