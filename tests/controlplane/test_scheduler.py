"""The scheduler (issue 10 item 4, issue 11 items 2 and 4): no over-commit under concurrent
creates, atomic multi-slot placement, resource policies with reasons that name them, scaling
groups bound to domains and projects, FIFO / LIFO / DRF and node selection."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from sqlalchemy import select, update

import wire
from controlplane import reconcile
from controlplane.db.models import (
    OCCUPYING_STATUSES,
    Keypair,
    Project,
    ResourcePolicy,
    ScalingGroup,
    ScalingGroupProject,
    Session,
)
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API
from tests.controlplane.conftest import Keypair as Signer

pytestmark = pytest.mark.anyio
GiB = 2**30


def _body(name: str, **config: Any) -> dict[str, Any]:
    return {"image": "python", "name": name, "enqueueOnly": True, "config": config}


async def _signer(api: API, email: str) -> Signer:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    assert created.status == 201, created.body
    return Signer(created.body["accessKey"], created.body["secretKey"])


async def _statuses(api: API) -> dict[str, tuple[str, str, str | None]]:
    """name -> (status, status info, node) of every session."""
    async with api.core.db() as db:
        rows = await db.execute(
            select(Session.name, Session.status, Session.status_info, Session.node_id)
        )
        return {name: (status, info, node) for name, status, info, node in rows}


async def _until(api: API, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Wait (re-checking after each session event) until `condition(_statuses)` holds."""
    async with api.core.events.subscribe() as events:
        with anyio.fail_after(60):  # a bound, not a wait: parallel tests share the CPUs
            while not condition(state := await _statuses(api)):
                with anyio.move_on_after(0.5):  # events of commits before we subscribed
                    await events.receive()
    return state


def _running(state: dict[str, Any]) -> set[str]:
    return {name for name, (status, _, _) in state.items() if status == "RUNNING"}


@asynccontextmanager
async def _most_occupying(api: API) -> AsyncIterator[list[int]]:
    """Track, from every session event, the largest number of sessions holding slots at once."""
    most = [0]
    holding: set[uuid.UUID] = set()
    async with api.core.events.subscribe() as events, anyio.create_task_group() as tg:

        async def watch() -> None:
            async for event in events:
                if event.status in OCCUPYING_STATUSES:
                    holding.add(event.session_id)
                else:
                    holding.discard(event.session_id)
                most[0] = max(most[0], len(holding))

        tg.start_soon(watch)
        yield most
        tg.cancel_scope.cancel()


async def test_sixty_concurrent_creates_never_overcommit_a_node_that_fits_five(api: API) -> None:
    node = FakeNode(api.core, "i-five", {"cpu": "5", "mem": str(5 * GiB)})
    await node.connect()
    async with _most_occupying(api) as most:
        async with anyio.create_task_group() as tg:
            for i in range(60):
                body = _body(f"burst-{i:02}", resources={"cpu": "1", "mem": "1g"})
                tg.start_soon(api.call, "POST", "/session", body)
        state = await _until(
            api,
            lambda s: (
                len(s) == 60
                and len(_running(s)) == 5
                and all(info != "enqueued" for _, info, _ in s.values())
            ),
        )
        waiting = [info for status, info, _ in state.values() if status == "PENDING"]
        assert len(waiting) == 55
        assert all(
            info.startswith("waiting for resources: needs cpu=1 mem=1 GiB") for info in waiting
        )
        first = _running(state)
        async with anyio.create_task_group() as tg:
            for name in first:
                tg.start_soon(api.call, "DELETE", f"/session/{name}")
        state = await _until(api, lambda s: len(_running(s) - first) == 5)
        assert len(_running(state)) == 5
    assert most[0] == 5
    assert len(node.kernels) == 5


async def test_a_multi_slot_request_is_placed_whole_or_waits(api: API) -> None:
    node = FakeNode(api.core, "i-gpu", {"cpu": "8", "mem": str(16 * GiB), "cuda.device": "4"})
    await node.connect()
    slots = await api.call("GET", "/config/resource-slots")
    assert slots.body == {"cpu": "count", "cuda.device": "count", "mem": "bytes"}
    details = await api.call("GET", "/config/resource-slots/details")
    assert sorted(details.body) == ["cpu", "cuda.device", "mem"]
    assert details.body["mem"]["slot_name"] == "ram"
    assert details.body["cuda.device"]["display_unit"] == "GPU"
    elsewhere = await api.call("GET", "/config/resource-slots/details?sgroup=nowhere")
    assert sorted(elsewhere.body) == ["cpu", "mem"]
    for name in ("two-a", "two-b", "two-c"):
        body = _body(name, resources={"cpu": "1", "mem": "1g", "cuda.device": "2"})
        assert (await api.call("POST", "/session", body)).status == 201
    state = await _until(api, lambda s: len(_running(s)) == 2 and s["two-c"][1] != "enqueued")
    status, info, _ = state["two-c"]
    assert status == "PENDING"
    assert "short of cuda.device" in info and "cuda.device=2" in info
    # a fractional request of a whole-device slot is refused at once
    bad = await api.call("POST", "/session", _body("half", resources={"cuda.device": "0.5"}))
    assert bad.status == 400 and "whole devices" in str(bad.body)
    await api.call("DELETE", "/session/two-a")
    await _until(api, lambda s: s["two-c"][0] == "RUNNING")


async def _set_policy(api: API, access_key: str, **limits: Any) -> None:
    async with api.core.db() as db:
        db.add(ResourcePolicy(name="tight", **limits))
        await db.flush()
        await db.execute(
            update(Keypair).where(Keypair.access_key == access_key).values(resource_policy="tight")
        )
        await db.commit()


async def test_a_keypair_policy_holds_the_third_session_and_names_itself(
    api: API, node: FakeNode
) -> None:
    user = await _signer(api, "two@example.com")
    await _set_policy(api, user.access_key, max_concurrent_sessions=2)
    small = {"resources": {"cpu": "0.1", "mem": "128m"}}
    for name in ("pol-1", "pol-2", "pol-3"):
        created = await api.call("POST", "/session", _body(name, **small), keypair=user)
        assert created.status == 201
    state = await _until(api, lambda s: len(_running(s)) == 2 and s["pol-3"][1] != "enqueued")
    assert state["pol-3"][:2] == (
        "PENDING",
        "waiting: keypair resource policy 'tight': at most 2 concurrent sessions",
    )
    # another keypair is not held back by it
    assert (await api.call("POST", "/session", _body("admins", **small))).status == 201
    await _until(api, lambda s: s["admins"][0] == "RUNNING")
    await api.call("DELETE", "/session/pol-1", keypair=user)
    await _until(api, lambda s: s["pol-3"][0] == "RUNNING")


async def test_a_policy_caps_the_total_gpus_a_keypair_holds(api: API) -> None:
    node = FakeNode(api.core, "i-gpu", {"cpu": "8", "mem": str(16 * GiB), "cuda.device": "8"})
    await node.connect()
    await _set_policy(api, api.admin.access_key, total_resource_slots={"cuda.device": "3"})
    gpus = {"resources": {"cpu": "1", "mem": "1g", "cuda.device": "2"}}
    for name in ("gpu-a", "gpu-b"):
        assert (await api.call("POST", "/session", _body(name, **gpus))).status == 201
    state = await _until(api, lambda s: len(_running(s)) == 1 and "policy" in s["gpu-b"][1])
    assert state["gpu-b"][1] == (
        "waiting: keypair resource policy 'tight': at most cuda.device=3 in all"
        " (cuda.device=2 in use)"
    )


async def test_a_session_may_use_only_the_pools_its_project_may_use(
    api: API, node: FakeNode
) -> None:
    gpu_node = FakeNode(api.core, "i-pool-gpu", {"cpu": "4", "mem": str(8 * GiB)})
    await gpu_node.connect()
    async with api.core.db() as db:
        db.add(ScalingGroup(name="gpu", scheduler="fifo"))
        await db.commit()
    mutation = 'mutation { modify_agent(id: "i-pool-gpu", props: {scaling_group: "gpu"}) { ok } }'
    moved = await api.call("POST", "/admin/gql", {"query": mutation})
    assert moved.body["data"]["modify_agent"] == {"ok": True}
    denied = await api.call("POST", "/session", _body("in-gpu", scalingGroup="gpu"))
    assert (denied.status, denied.body["type"].rsplit("/", 1)[-1]) == (404, "object-not-found")
    assert "does not exist or you do not have access to the scaling group 'gpu'" in str(denied.body)
    unknown = await api.call("POST", "/session", {**_body("in-gpu"), "group": "nope"})
    assert unknown.status == 400 and "Invalid group" in str(unknown.body)
    async with api.core.db() as db:
        project = await db.scalar(select(Project).where(Project.name == "default"))
        assert project is not None
        db.add(ScalingGroupProject(scaling_group="gpu", project_id=project.id))
        await db.commit()
    body = {**_body("in-gpu", scalingGroup="gpu"), "group": "default"}
    assert (await api.call("POST", "/session", body)).status == 201
    assert (await api.call("POST", "/session", _body("in-default"))).status == 201
    state = await _until(api, lambda s: len(_running(s)) == 2)
    assert state["in-gpu"][2] == "i-pool-gpu"
    assert state["in-default"][2] == "i-fake"


@pytest.mark.parametrize(("selection", "same_node"), [("concentrated", True), ("dispersed", False)])
async def test_node_selection(api: API, selection: str, same_node: bool) -> None:
    for node_id in ("i-one", "i-two"):
        await FakeNode(api.core, node_id, {"cpu": "4", "mem": str(8 * GiB)}).connect()
    async with api.core.db() as db:
        await db.execute(
            update(ScalingGroup).values(scheduler_opts={"agent_selection_strategy": selection})
        )
        await db.commit()
    for name in ("sel-1", "sel-2"):
        body = _body(name, resources={"cpu": "1", "mem": "1g"})
        assert (await api.call("POST", "/session", body)).status == 201
        await _until(api, lambda s, name=name: s[name][0] == "RUNNING")
    state = await _statuses(api)
    assert (state["sel-1"][2] == state["sel-2"][2]) is same_node


@pytest.mark.parametrize(
    ("policy", "first"), [("fifo", "a-two"), ("lifo", "b-one"), ("drf", "b-one")]
)
async def test_queue_policies(api: API, policy: str, first: str) -> None:
    await FakeNode(api.core, "i-two-slots", {"cpu": "2", "mem": str(8 * GiB)}).connect()
    async with api.core.db() as db:
        await db.execute(update(ScalingGroup).values(scheduler=policy))
        await db.commit()
    a, b = await _signer(api, "a@example.com"), await _signer(api, "b@example.com")
    one = {"resources": {"cpu": "1", "mem": "1g"}}

    async def create(name: str, keypair: Signer | None = None) -> None:
        created = await api.call("POST", "/session", _body(name, **one), keypair=keypair)
        assert created.status == 201, created.body

    await create("a-one", a)
    await create("blocker")
    await _until(api, lambda s: len(_running(s)) == 2)
    # a holds one cpu of two and waits for more; b holds nothing and asks later
    await create("a-two", a)
    await _until(api, lambda s: "resources" in s["a-two"][1])
    await create("b-one", b)
    await _until(api, lambda s: "resources" in s["b-one"][1])
    await api.call("DELETE", "/session/blocker")
    state = await _until(api, lambda s: len(_running(s)) == 2 and "blocker" not in _running(s))
    assert _running(state) == {"a-one", first}


async def test_the_node_set_follows_image_reports_and_lost_connections(
    api: API, node: FakeNode
) -> None:
    """The scheduler keeps its nodes in memory (no node row is read for a pass): what a node
    reports and its lost connection count from the very next placement."""
    images = node.register_message().images
    await reconcile.on_images_changed(api.core, node.node_id, wire.ImagesChanged([]))
    assert (await api.call("POST", "/session", _body("img-1"))).status == 201
    await _until(api, lambda s: "waiting for a connected node that has the image" in s["img-1"][1])
    await reconcile.on_images_changed(api.core, node.node_id, wire.ImagesChanged(images))
    assert (await _until(api, lambda s: s["img-1"][0] == "RUNNING"))["img-1"][2] == node.node_id
    node.die()
    assert (await api.call("POST", "/session", _body("img-2"))).status == 201
    state = await _until(api, lambda s: s["img-2"][1] == "waiting for a node to connect")
    assert state["img-2"][0] == "PENDING"
