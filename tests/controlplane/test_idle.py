"""Idle checks that fire (issue 11 item 5): inactivity, maximum lifetime and low utilization
end a session with the reason `session info` shows, after a warning; a session in use stays.
Time is Core's clock, a ManualClock the tests advance: no sleeps."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

import wire
from controlplane import reconcile
from controlplane.api.app import create_app
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import create_engine, dispose
from controlplane.db.models import Session
from controlplane.events import SessionEvent
from controlplane.idle import IdleChecker, IdlePolicy
from controlplane.server import running_core
from controlplane.testing import FakeNode, ManualClock
from tests.controlplane.conftest import API, Keypair
from tests.controlplane.test_events import _listen
from tests.controlplane.test_graphql import gql

pytestmark = pytest.mark.anyio


@dataclass
class Idle:
    api: API
    clock: ManualClock
    policies: dict[str, IdlePolicy]
    node: FakeNode

    async def policy_for(self, session: Session) -> IdlePolicy:
        return self.policies.get(session.name, IdlePolicy())

    async def start(self, name: str, policy: IdlePolicy) -> None:
        self.policies[name] = policy
        body = {"image": "python", "name": name, "config": {"resources": {"cpu": "0.1"}}}
        created = await self.api.call("POST", "/session", body)
        assert (created.status, created.body["status"]) == (201, "RUNNING"), created.body

    async def use(self, name: str) -> None:
        ran = await self.api.call("POST", f"/session/{name}", {"mode": "query", "code": "1"})
        assert ran.status == 200, ran.body

    async def info(self, name: str) -> tuple[str, str]:
        got = await self.api.call("GET", f"/session/{name}")
        assert got.status == 200, got.body
        return got.body["status"], got.body["statusInfo"]


async def _idle(database_url: str, tmp_path: Path, checks: bool) -> AsyncIterator[Idle]:
    config = ControlPlaneConfig(state_dir=tmp_path, node_token="t", database_url=database_url)
    engine = create_engine(config.effective_database_url)
    clock = ManualClock()
    policies: dict[str, IdlePolicy] = {}

    async def policy_for(session: Session) -> IdlePolicy:
        return policies.get(session.name, IdlePolicy())

    async def no_checks(session: Session) -> IdlePolicy:
        return IdlePolicy()

    policy = policy_for if checks else no_checks
    async with running_core(config, engine, clock=clock, idle_policy=policy) as (core, made):
        assert made is not None
        api = API(create_app(core), core, Keypair(made[0].access_key, made[1]))
        node = FakeNode(core, "i-idle", {"cpu": "4", "mem": str(8 * 2**30)})
        await node.connect()
        yield Idle(api, clock, policies, node)
    await dispose(engine)


@pytest.fixture
async def idle(database_url: str, tmp_path: Path) -> AsyncIterator[Idle]:
    """Core's own checker checks nothing here: the tests run rounds themselves."""
    async for value in _idle(database_url, tmp_path, checks=False):
        yield value


async def test_an_unused_session_is_warned_then_ended_and_a_busy_one_stays(idle: Idle) -> None:
    checker = IdleChecker(idle.api.core, idle.policy_for)
    policy = IdlePolicy(idle_timeout=300, warn_before=60)
    await idle.start("unused", policy)
    await idle.start("busy", policy)
    async with idle.api.core.events.subscribe() as events:
        idle.clock.advance(200)
        await idle.use("busy")
        await checker.check_once()
        assert (await idle.info("unused"))[0] == "RUNNING"
        idle.clock.advance(60)  # 260 s unused: within a minute of the end
        await idle.use("busy")
        await checker.check_once()
        status, info = await idle.info("unused")
        assert status == "RUNNING" and info.startswith("idle warning: ends in"), info
        session_id = (await idle.api.call("GET", "/session/unused")).body["sessionId"]
        shown = await gql(
            idle.api,
            "query($id: UUID!) { compute_session(id: $id) { idle_checks } }",
            {"id": session_id},
        )
        checks = json.loads(shown["data"]["compute_session"]["idle_checks"])
        assert set(checks) == {"network_timeout"}
        assert 0 < checks["network_timeout"]["remaining"] <= 60
        assert checks["network_timeout"]["remaining_time_type"] == "expire_after"
        warning = events.receive_nowait()
        assert (warning.session_name, warning.status) == ("unused", "RUNNING")
        assert "idle-timeout" in warning.reason
        idle.clock.advance(60)
        await idle.use("busy")
        await checker.check_once()
    assert await idle.info("unused") == ("TERMINATED", "idle-timeout")
    assert (await idle.info("busy"))[0] == "RUNNING"
    history = (await idle.api.call("GET", "/session/unused")).body["statusHistory"]
    assert [(h["status"], h["reason"]) for h in history][-2:] == [
        ("TERMINATING", "idle-timeout"),
        ("TERMINATED", "idle-timeout"),
    ]


async def test_the_idle_timeout_comes_from_the_keypairs_resource_policy(idle: Idle) -> None:
    api = idle.api
    made = await gql(
        api,
        'mutation { create_keypair_resource_policy(name: "brief", props: {idle_timeout: 120})'
        " { ok msg } }",
    )
    assert made["data"]["create_keypair_resource_policy"]["ok"], made
    assigned = await gql(
        api,
        'mutation($key: String) { set_resource_policy(name: "brief", access_key: $key)'
        " { ok msg } }",
        {"key": api.admin.access_key},
    )
    assert assigned["data"]["set_resource_policy"]["ok"], assigned
    checker = IdleChecker(api.core)  # the resource policies' thresholds, as the server's
    await idle.start("brief-1", IdlePolicy())  # (the fixture's own policy is not used here)
    idle.clock.advance(70)
    await checker.check_once()
    status, info = await idle.info("brief-1")
    assert status == "RUNNING" and info.startswith("idle warning: ends in"), info
    idle.clock.advance(60)
    await checker.check_once()
    assert await idle.info("brief-1") == ("TERMINATED", "idle-timeout")


async def test_a_client_watching_events_sees_the_warning_before_the_idle_end(idle: Idle) -> None:
    checker = IdleChecker(idle.api.core, idle.policy_for)
    await idle.start("watched-idle", IdlePolicy(idle_timeout=300, warn_before=60))

    async def leave_it_idle() -> None:
        idle.clock.advance(250)
        await checker.check_once()  # warns
        idle.clock.advance(60)
        await checker.check_once()  # ends

    target = "/events/session?sessionName=watched-idle&scope=session"
    status, events = await _listen(idle.api, target, leave_it_idle)
    assert status == 200
    assert [name for name, _ in events] == [
        "session_idle_warning",
        "session_terminating",
        "session_terminated",
        "server_close",
    ]
    warning = events[0][1]["reason"]
    assert warning.startswith("idle warning: ends in") and "(idle-timeout)" in warning, warning
    assert events[2][1]["reason"] == "idle-timeout"


async def test_a_session_past_its_lifetime_ends_even_in_use(idle: Idle) -> None:
    checker = IdleChecker(idle.api.core, idle.policy_for)
    await idle.start("long-job", IdlePolicy(max_session_lifetime=600, warn_before=120))
    for _ in range(5):
        idle.clock.advance(100)
        await idle.use("long-job")
        await checker.check_once()
    status, info = await idle.info("long-job")
    assert status == "RUNNING" and "max-lifetime-exceeded" in info  # warned at 500 s
    idle.clock.advance(110)
    await checker.check_once()
    assert await idle.info("long-job") == ("TERMINATED", "max-lifetime-exceeded")


async def test_utilization_below_the_thresholds_for_a_whole_window_ends_a_session(
    idle: Idle,
) -> None:
    checker = IdleChecker(idle.api.core, idle.policy_for)
    policy = IdlePolicy(utilization_window=300, min_cpu_pct=10, min_gpu_pct=10, warn_before=0)
    await idle.start("lazy", policy)
    await idle.start("crunching", policy)
    activity = idle.api.core.activity
    ids = {
        name: (await idle.api.call("GET", f"/session/{name}")).body["sessionId"]
        for name in ("lazy", "crunching")
    }
    lazy, crunching = (uuid.UUID(ids[n]) for n in ("lazy", "crunching"))
    for minute in range(6):
        activity.sample(lazy, cpu_pct=2.0, gpu_pct=1.0)
        # busy on the GPU while the CPU idles: that is use
        activity.sample(crunching, cpu_pct=1.0, gpu_pct=95.0 if minute == 3 else 3.0)
        await checker.check_once()
        idle.clock.advance(60)
    activity.sample(lazy, cpu_pct=2.0, gpu_pct=1.0)
    activity.sample(crunching, cpu_pct=1.0, gpu_pct=3.0)
    await checker.check_once()
    assert await idle.info("lazy") == ("TERMINATED", "idle-utilization")
    assert (await idle.info("crunching"))[0] == "RUNNING"


async def test_cores_checker_runs_on_cores_clock(database_url: str, tmp_path: Path) -> None:
    async for idle in _idle(database_url, tmp_path, checks=True):
        await idle.start("forgotten", IdlePolicy(idle_timeout=30, warn_before=0))
        async with idle.api.core.events.subscribe() as events:
            idle.clock.advance(40)
            with anyio.fail_after(30):
                ended: SessionEvent = await events.receive()
                while ended.status != "TERMINATED":
                    ended = await events.receive()
        assert (ended.session_name, ended.reason) == ("forgotten", "idle-timeout")


def _stats(kernel_id: str, cpu_pct: float) -> wire.KernelStats:
    return wire.KernelStats(kernel_id, cpu_pct, 0, 2**20, None, 0, 0, 0, 0)


async def test_node_heartbeats_end_an_under_used_session_under_its_policys_thresholds(
    idle: Idle,
) -> None:
    api = idle.api
    made = await gql(
        api,
        'mutation { create_keypair_resource_policy(name: "frugal", props: {'
        "utilization_window: 300, min_cpu_util_pct: 10}) { ok msg resource_policy {"
        " utilization_window min_cpu_util_pct min_gpu_util_pct } } }",
    )
    created = made["data"]["create_keypair_resource_policy"]
    assert created["resource_policy"] == {
        "utilization_window": 300,
        "min_cpu_util_pct": 10,
        "min_gpu_util_pct": 0,
    }, made
    bad = await gql(
        api,
        'mutation { modify_keypair_resource_policy(name: "frugal", props: {min_cpu_util_pct:'
        " 101}) { ok msg } }",
    )
    assert bad["data"]["modify_keypair_resource_policy"] == {
        "ok": False,
        "msg": "min_cpu_util_pct is a percentage: 0 to 100",
    }
    assigned = await gql(
        api,
        'mutation($key: String) { set_resource_policy(name: "frugal", access_key: $key)'
        " { ok msg } }",
        {"key": api.admin.access_key},
    )
    assert assigned["data"]["set_resource_policy"]["ok"], assigned
    checker = IdleChecker(api.core)  # the resource policies' thresholds, as the server's
    await idle.start("dozing", IdlePolicy())  # cpu 0.1 each
    await idle.start("working", IdlePolicy())
    names = ("dozing", "working")
    ids = {n: (await api.call("GET", f"/session/{n}")).body["sessionId"] for n in names}
    dozing, working = (next(k for k, s in idle.node.kernels.items() if s == ids[n]) for n in names)
    for _ in range(7):  # a heartbeat a minute, as the node sends them (more often, in truth)
        # 0.5 % of one core is 5 % of the 0.1 cpu it holds; 5 % is half of the 0.1
        beat = wire.Heartbeat(3.0, 2**30, kernels=[_stats(dozing, 0.5), _stats(working, 5.0)])
        await reconcile.on_heartbeats(api.core, [reconcile.Beat("i-idle", beat)])
        await checker.check_once()
        idle.clock.advance(60)
    assert await idle.info("dozing") == ("TERMINATED", "idle-utilization")
    assert (await idle.info("working"))[0] == "RUNNING"
