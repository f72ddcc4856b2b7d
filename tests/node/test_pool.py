"""Warm kernels (node/pool.py) on a real Docker engine, driven through the fake control plane."""

from __future__ import annotations

import dataclasses
import io
import logging
import uuid
from collections.abc import AsyncIterator

import docker
import pytest
import trio

from node import NodeConfig
from node.kernels import short_id
from node.testing import FakeControlPlane, NodeProcess, text_of
from tests.node.conftest import OWNER
from wire import CreateKernel, DestroyKernel, KernelCreated, read_result

pytestmark = [pytest.mark.trio, pytest.mark.docker]

POOL_LABEL = "ai.shipyard.pool-id"


@pytest.fixture
async def pooled(
    nursery: trio.Nursery,
    node_config: NodeConfig,
    control_plane: FakeControlPlane,
    kernel_image: str,
) -> AsyncIterator[NodeProcess]:
    """A node keeping one warm kernel of the test image, on a node of 1.5 cpu."""
    config = dataclasses.replace(node_config, warm_pool=1, warm_pool_images=[kernel_image], cpu=1.5)
    process = NodeProcess(nursery, config)
    await process.start()
    await control_plane.registration()
    yield process
    await process.stop()


async def _ready(caplog: pytest.LogCaptureFixture, count: int) -> str:
    """The container id of the `count`-th warm kernel the pool made ready."""

    def made() -> list[str]:
        return [r.args[0] for r in caplog.records if r.msg == "warm kernel %s of %s ready"]  # type: ignore[index]

    with trio.fail_after(30):
        while len(made()) < count:  # noqa: ASYNC110 (a poll with a timeout)
            await trio.sleep(0.05)
    return made()[count - 1]


async def _unclaimed(client: docker.DockerClient, node: NodeProcess) -> list[str]:
    """The node's warm containers that were not handed out."""
    label = f"ai.shipyard.node-id={node.config.node_id}"
    found = await trio.to_thread.run_sync(
        lambda: client.containers.list(all=True, filters={"label": [label, POOL_LABEL]})
    )
    folders = node.config.state_dir / "k"
    claimed = [
        c for c in found if (folders / short_id(c.labels[POOL_LABEL]) / "claim.json").exists()
    ]
    return [c.id for c in found if c not in claimed]


async def _create(
    cp: FakeControlPlane,
    image: str,
    *,
    cpu: str = "0.5",
    mem: str = "256m",
    env: dict[str, str] | None = None,
) -> tuple[str, str]:
    kernel_id = str(uuid.uuid4())
    reply = await cp.request(
        lambda req_id: CreateKernel(
            req_id, kernel_id, str(uuid.uuid4()), OWNER, image, {"cpu": cpu, "mem": mem},
            environ=env or {},
        )
    )  # fmt: skip
    assert reply.ok, reply.error
    return kernel_id, read_result(reply, KernelCreated).container_id


LEAVE_TRACES = """
import os, subprocess
open('/home/work/left.txt', 'w').write('secret')
open('/tmp/left.txt', 'w').write('secret')
os.environ['LEFT'] = 'secret'
subprocess.Popen(['sleep', '1000'], start_new_session=True)
left = 'secret'
print('ok')
"""

FIND_TRACES = """
import os
procs = [open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()]
print(sorted(os.listdir('/home/work')), os.path.exists('/tmp/left.txt'),
      'LEFT' in os.environ, any('sleep' in c for c in procs), 'left' in globals())
"""


async def test_a_warm_kernel_serves_one_session_and_carries_nothing_to_the_next(
    pooled: NodeProcess,
    control_plane: FakeControlPlane,
    docker_client: docker.DockerClient,
    kernel_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "shipyard.node.pool")
    warm = await _ready(caplog, 1)
    first, container = await _create(control_plane, kernel_image)
    assert container.startswith(warm)  # handed out, not made anew
    host = docker_client.api.inspect_container(container)["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["MemorySwap"]) == (
        500_000_000, 256 * 2**20, 256 * 2**20,
    )  # fmt: skip
    assert text_of(await control_plane.execute(first, LEAVE_TRACES)) == "ok\n"

    reply = await control_plane.request(lambda req_id: DestroyKernel(req_id, first))
    assert reply.ok, reply.error
    warm_again = await _ready(caplog, 2)
    # the limits warm kernels are made with: kept as they are
    second, container = await _create(control_plane, kernel_image, cpu="1", mem="1g")
    assert container.startswith(warm_again) and warm_again != warm
    host = docker_client.api.inspect_container(container)["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (10**9, 2**30, 1024)
    assert text_of(await control_plane.execute(second, FIND_TRACES)) == (
        "['lost+found'] False False False False\n"  # a fresh work filesystem
    )

    # who a handed-out kernel belongs to outlives the node process; unused ones do not
    await pooled.stop()
    assert await _unclaimed(docker_client, pooled) == []
    await pooled.start()
    register = await control_plane.registration(2)
    assert [(k.kernel_id, k.running) for k in register.kernels] == [(second, True)]
    assert text_of(await control_plane.execute(second, "print('still here')")) == "still here\n"


async def test_the_pool_gives_way_rather_than_overcommit_the_node(
    pooled: NodeProcess,
    control_plane: FakeControlPlane,
    docker_client: docker.DockerClient,
    kernel_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "shipyard.node.pool")
    await _ready(caplog, 1)  # 1 cpu of the node's 1.5
    # an environment is fixed at creation: this kernel is made anew, and 1 + 1 > 1.5
    kernel_id, _ = await _create(control_plane, kernel_image, cpu="1", env={"A": "b"})
    assert await _unclaimed(docker_client, pooled) == []
    reply = await control_plane.request(lambda req_id: DestroyKernel(req_id, kernel_id))
    assert reply.ok, reply.error
    await _ready(caplog, 2)  # refilled once there is room
    assert len(await _unclaimed(docker_client, pooled)) == 1


async def test_warm_kernels_of_a_changed_image_are_replaced(
    nursery: trio.Nursery,
    node_config: NodeConfig,
    control_plane: FakeControlPlane,
    docker_client: docker.DockerClient,
    kernel_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "shipyard.node.pool")
    tag = f"shipyard-test/pool-{uuid.uuid4().hex[:8]}:1"

    def build(revision: str) -> str:
        recipe = f"FROM {kernel_image}\nLABEL test.revision={revision}\n"
        image, _ = docker_client.images.build(
            fileobj=io.BytesIO(recipe.encode()), tag=tag, rm=True, forcerm=True
        )
        return str(image.id)

    built = [await trio.to_thread.run_sync(build, "1")]
    node = NodeProcess(
        nursery, dataclasses.replace(node_config, warm_pool=1, warm_pool_images=[tag])
    )
    try:
        await node.start()
        first = await _ready(caplog, 1)
        built.append(await trio.to_thread.run_sync(build, "2"))
        second = await _ready(caplog, 2)
        [left] = await _unclaimed(docker_client, node)  # the first one is gone
        assert left.startswith(second) and not first.startswith(second)
        assert docker_client.api.inspect_container(left)["Image"] == built[1]
        await node.stop()
    finally:
        for image_id in built:
            docker_client.api.remove_image(image_id, force=True)
