"""What a killed control plane left half done is settled on restart (issue 8.5): the records a
dead process left, then what the node reports when it registers again. The same with a real
appliance and `kill -9` is tests/e2e/test_restart.py."""

from __future__ import annotations

import uuid

import anyio
import pytest
from sqlalchemy import select, update

import wire
from controlplane import reconcile
from controlplane.db.models import Kernel, Session
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


async def _create(api: API, name: str, cpu: str = "0.25") -> str:
    config = {"resources": {"cpu": cpu, "mem": "256m"}}
    created = await api.call(
        "POST", "/session", {"image": "python", "name": name, "config": config}
    )
    assert created.body["status"] == "RUNNING"
    return str(created.body["sessionId"])


async def _left_by_a_dead_process(api: API, statuses: dict[str, str]) -> None:
    async with api.core.db() as db:
        for name, status in statuses.items():
            await db.execute(update(Session).where(Session.name == name).values(status=status))
        await db.commit()


async def _wait_for(api: API, wanted: dict[str, str]) -> dict[str, dict[str, str]]:
    async with api.core.events.subscribe() as events:
        with anyio.fail_after(10):
            while True:
                now = {n: (await api.call("GET", f"/session/{n}")).body for n in wanted}
                if all(now[n]["status"] == status for n, status in wanted.items()):
                    return now
                await events.receive()


async def test_restart_settles_every_interrupted_session(api: API, node: FakeNode) -> None:
    names = ["term-live", "term-gone", "start-live", "start-stopped", "start-none", "running"]
    ids = {name: await _create(api, name) for name in names}
    kernel_of = {session: kernel for kernel, session in node.kernels.items()}
    kernel = {name: kernel_of[ids[name]] for name in names}

    # the process dies in the middle of two destroys and three starts, and the node with it
    node.die()
    await _left_by_a_dead_process(
        api,
        {
            "term-live": "TERMINATING",
            "term-gone": "TERMINATING",
            "start-live": "PREPARING",
            "start-stopped": "PREPARING",
            "start-none": "SCHEDULED",
        },
    )
    await reconcile.recover_after_restart(api.core)  # what a starting control plane does first
    stray = str(uuid.uuid4())
    node.kernels = {
        kernel[n]: ids[n] for n in ("term-live", "start-live", "start-stopped", "running")
    }
    node.kernels[stray] = str(uuid.uuid4())

    def reported(name: str, running: bool = True) -> wire.KernelInfo:
        return wire.KernelInfo(kernel[name], ids[name], "c-" + name, running=running)

    await node.connect(
        [
            reported("term-live"),
            reported("start-live"),
            reported("start-stopped", running=False),
            reported("running"),
            wire.KernelInfo(stray, node.kernels[stray], "c-stray", running=True),
        ]
    )
    after = await _wait_for(
        api,
        {
            "term-live": "TERMINATED",
            "term-gone": "TERMINATED",
            "start-live": "RUNNING",
            "start-stopped": "RUNNING",
            "start-none": "RUNNING",
            "running": "RUNNING",
        },
    )
    assert after["start-live"]["statusInfo"].startswith("adopted container c-start-live")
    assert "finished when node i-fake registered again" in after["term-live"]["statusInfo"]

    # every container left belongs to a running session, one each
    async with api.core.db() as db:
        live = {
            str(k.id): str(k.session_id)
            for k in await db.scalars(select(Kernel).where(Kernel.status == "RUNNING"))
        }
    await node.wait_until(lambda: node.kernels == live)
    assert sorted(live.values()) == sorted(
        ids[n] for n in ("start-live", "start-stopped", "start-none", "running")
    )
    assert kernel["start-live"] in live and kernel["running"] in live  # adopted, kept
    assert kernel["start-stopped"] not in live  # it never ran: removed, and started anew

    # and the slots of the ended ones are free again: 4 x 0.25 of 2 CPUs are taken
    await _create(api, "after-1", cpu="1")


async def test_a_start_made_again_elsewhere_is_not_doubled(api: API, node: FakeNode) -> None:
    session_id = await _create(api, "moved-1")
    [(old_kernel, _)] = node.kernels.items()
    node.die()
    await _left_by_a_dead_process(api, {"moved-1": "PREPARING"})
    await reconcile.recover_after_restart(api.core)
    other = FakeNode(api.core, "i-fake-2", node.slots)
    await other.connect()  # the other node comes back first: the start is made again there
    after = await _wait_for(api, {"moved-1": "RUNNING"})
    assert after["moved-1"]["node"] == "i-fake-2"

    await node.connect([wire.KernelInfo(old_kernel, session_id, "c-old", running=True)])
    await node.wait_until(lambda: node.kernels == {})  # the first start's container goes
    again = await api.call("GET", "/session/moved-1")
    assert (again.body["status"], again.body["node"]) == ("RUNNING", "i-fake-2")
