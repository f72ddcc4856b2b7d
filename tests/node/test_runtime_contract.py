"""The `ContainerRuntime` contract, run on Docker and on the in-memory double alike.

A harness per runtime makes a container's program do something (print, exit with a code, run
out of memory): on Docker a real program inside the container takes orders through a FIFO; on
the double the test controls stand in for it. Everything else is asserted the same way on both.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import docker
import pytest
import trio

from node.errors import ContainerNotFound, ImageNotFound, NodeError
from node.kernels import LABEL_NODE
from node.runtime import (
    ContainerRuntime,
    ContainerSpec,
    DockerRuntime,
    ImageRecord,
    Limits,
    RuntimeEvent,
)
from node.testing import MemoryRuntime

pytestmark = pytest.mark.trio

MIB = 2**20
IMAGE_LABEL = "ai.shipyard.kernel"
# The Docker container's program: run each piece of Python written to the FIFO /tmp/ctl.
PROGRAM = """
import os
os.mkfifo("/tmp/ctl")
while True:
    with open("/tmp/ctl") as ctl:
        exec(ctl.read())
"""
WRITE_ORDER = """
import os, sys, time
while not os.path.exists("/tmp/ctl"):  # the program may not have made it yet
    time.sleep(0.01)
with open("/tmp/ctl", "w") as ctl:
    ctl.write(sys.argv[1])
"""


class Harness(Protocol):
    @property
    def runtime(self) -> ContainerRuntime: ...
    @property
    def image(self) -> str: ...
    async def say(self, container_id: str, text: str) -> None: ...
    async def exit(self, container_id: str, code: int) -> None: ...
    async def exhaust_memory(self, container_id: str) -> None: ...


@dataclass
class DockerHarness:
    runtime: DockerRuntime
    image: str
    client: docker.DockerClient

    async def _order(self, container_id: str, code: str) -> None:
        def send() -> None:
            exec_id = self.client.api.exec_create(
                container_id, ["python3", "-c", WRITE_ORDER, code]
            )
            self.client.api.exec_start(exec_id)

        await trio.to_thread.run_sync(send)

    async def say(self, container_id: str, text: str) -> None:
        await self._order(container_id, f"print({text!r}, flush=True)")

    async def exit(self, container_id: str, code: int) -> None:
        await self._order(container_id, f"raise SystemExit({code})")

    async def exhaust_memory(self, container_id: str) -> None:
        await self._order(container_id, f"hog = bytearray({512 * MIB})")


@dataclass
class MemoryHarness:
    runtime: MemoryRuntime
    image: str

    async def say(self, container_id: str, text: str) -> None:
        self.runtime.write_log(container_id, text + "\n")

    async def exit(self, container_id: str, code: int) -> None:
        await self.runtime.exit(container_id, code)

    async def exhaust_memory(self, container_id: str) -> None:
        await self.runtime.oom_kill(container_id)


@pytest.fixture(params=["docker", "memory"])
async def harness(request: pytest.FixtureRequest, node_id: str) -> AsyncIterator[Harness]:
    if request.param == "memory":
        image = ImageRecord(
            "sha256:" + "ab" * 32, ["test/python:1"], 1, "amd64", {IMAGE_LABEL: "1"}
        )
        yield MemoryHarness(MemoryRuntime([image]), "test/python:1")
        return
    client = request.getfixturevalue("docker_client")
    image = request.getfixturevalue("kernel_image")
    runtime = DockerRuntime(client)
    yield DockerHarness(runtime, image, client)  # node_id's teardown removes the containers


def _spec(harness: Harness, node_id: str, **labels: str) -> ContainerSpec:
    return ContainerSpec(
        name=f"shipyard-contract-{uuid.uuid4().hex[:12]}",
        image=harness.image,
        command=["python3", "-c", PROGRAM],
        labels={LABEL_NODE: node_id, **labels},
        user="65536:65536",
        environment={},
        working_dir="/",
        binds=[],
        network_mode="none",
        mem_limit=64 * MIB,
        scratch={"/tmp": MIB},
    )


async def _die(events: trio.MemoryReceiveChannel[RuntimeEvent], container_id: str) -> RuntimeEvent:
    with trio.fail_after(30):
        async for event in events:  # other tests' containers may die meanwhile
            if (event.kind, event.action, event.id) == ("container", "die", container_id):
                return event
    raise AssertionError("the event stream ended")


async def test_lifecycle_and_label_filters(harness: Harness, node_id: str) -> None:
    runtime = harness.runtime
    container_id = await runtime.create(_spec(harness, node_id, role="a"))
    created = await runtime.inspect(container_id)
    assert (created.running, created.exit_code, created.oom_killed) == (False, 0, False)
    own = {LABEL_NODE: node_id, "role": "a"}
    assert own.items() <= created.labels.items()
    assert created.labels[IMAGE_LABEL] == "1"  # inherited from the image
    assert created.mem_limit == 64 * MIB

    await runtime.start(container_id)
    assert (await runtime.inspect(container_id)).running
    await runtime.update(container_id, Limits(500_000_000, mem_limit=96 * MIB, pids_limit=64))
    updated = await runtime.inspect(container_id)  # a running container's limits change
    assert (updated.nano_cpus, updated.mem_limit, updated.running) == (500_000_000, 96 * MIB, True)
    assert [s.id for s in await runtime.containers({LABEL_NODE: node_id})] == [container_id]
    assert [s.id for s in await runtime.containers({LABEL_NODE: node_id, "role": "a"})] == [
        container_id
    ]
    assert await runtime.containers({LABEL_NODE: node_id, "role": "b"}) == []

    await harness.say(container_id, "hello")
    with trio.fail_after(30):
        while True:  # the engine has no event for a line logged: poll
            if "hello\n" in await runtime.logs(container_id, tail=5):
                break
            await trio.sleep(0.02)

    await runtime.remove(container_id)
    await runtime.remove(container_id)  # gone is fine
    assert await runtime.containers({LABEL_NODE: node_id}) == []
    with pytest.raises(ContainerNotFound):
        await runtime.inspect(container_id)
    with pytest.raises(ContainerNotFound):
        await runtime.start(container_id)


async def test_exit_code_and_out_of_memory_are_reported(harness: Harness, node_id: str) -> None:
    runtime = harness.runtime
    send, events = trio.open_memory_channel[RuntimeEvent](100)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.follow_events, send)
        exits = await runtime.create(_spec(harness, node_id, role="exits"))
        hog = await runtime.create(_spec(harness, node_id, role="hog"))
        for container_id in (exits, hog):
            await runtime.start(container_id)

        await harness.exit(exits, 3)
        died = await _die(events, exits)
        assert died.attributes["exitCode"] == "3"
        assert died.attributes["role"] == "exits"  # a die event carries the labels
        state = await runtime.inspect(exits)
        assert (state.running, state.exit_code, state.oom_killed) == (False, 3, False)

        await harness.exhaust_memory(hog)
        assert (await _die(events, hog)).attributes["exitCode"] == "137"
        state = await runtime.inspect(hog)
        assert (state.running, state.exit_code, state.oom_killed) == (False, 137, True)

        running = await runtime.create(_spec(harness, node_id))
        await runtime.start(running)
        await runtime.remove(running)  # a running container is killed on the way
        assert (await _die(events, running)).attributes["exitCode"] == "137"
        nursery.cancel_scope.cancel()


async def test_refusals(harness: Harness, node_id: str) -> None:
    runtime = harness.runtime
    spec = _spec(harness, node_id)
    await runtime.create(spec)
    with pytest.raises(NodeError, match=spec.name):
        await runtime.create(spec)  # the name is taken
    missing = _spec(harness, node_id)
    with pytest.raises(ImageNotFound):
        await runtime.create(ContainerSpec(**{**missing.__dict__, "image": "shipyard-test/no:0"}))
    with pytest.raises(ContainerNotFound):
        await runtime.inspect("0" * 64)


async def test_images_are_listed_by_label(harness: Harness) -> None:
    records = await harness.runtime.images(IMAGE_LABEL)
    [record] = [r for r in records if harness.image in r.tags]
    assert record.id.startswith("sha256:") and record.architecture
    assert IMAGE_LABEL in record.labels
    assert await harness.runtime.images("ai.shipyard.no-such-label") == []
