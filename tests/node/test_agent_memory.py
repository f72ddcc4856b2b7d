"""The node agent on the in-memory runtime: what it reports of containers, without Docker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from node import NodeConfig
from node.kernels import LABEL_KERNEL, LABEL_NODE, LABEL_SESSION
from node.runtime import ContainerSpec, ImageRecord
from node.testing import FakeControlPlane, MemoryRuntime, NodeProcess
from tests.node.conftest import TOKEN
from wire import ImagesChanged, KernelExited

pytestmark = pytest.mark.trio

IMAGE = ImageRecord(
    "sha256:" + "cd" * 32, ["test/python:1"], 7, "amd64", {"ai.shipyard.kernel": "1"}
)


def _spec(node_id: str, kernel_id: str) -> ContainerSpec:
    return ContainerSpec(
        name=f"shipyard-{kernel_id[:12]}",
        image="test/python:1",
        command=["python3", "/opt/shipyard/runner.py"],
        labels={LABEL_NODE: node_id, LABEL_KERNEL: kernel_id, LABEL_SESSION: "s"},
        user="65536:65536",
        environment={},
        working_dir="/home/work",
        binds=[],
        network_mode="none",
        mem_limit=128 * 2**20,
    )


async def test_register_images_and_kernel_ends_on_the_memory_runtime(
    nursery: trio.Nursery, state_dir: Path, control_plane: FakeControlPlane
) -> None:
    node_id = f"i-memory-{uuid.uuid4().hex[:8]}"
    runtime = MemoryRuntime([IMAGE])
    exits, hog = str(uuid.uuid4()), str(uuid.uuid4())
    ids = {}
    for kernel_id in (exits, hog):
        ids[kernel_id] = await runtime.create(_spec(node_id, kernel_id))
        await runtime.start(ids[kernel_id])
    config = NodeConfig(state_dir, control_plane.url, TOKEN, node_id=node_id)
    node = NodeProcess(nursery, config, runtime)
    await node.start()

    register = await control_plane.registration()
    assert {(k.kernel_id, k.running) for k in register.kernels} == {(exits, True), (hog, True)}
    assert [(i.name, i.digest, i.architecture) for i in register.images] == [
        ("test/python:1", IMAGE.id, "x86_64")
    ]

    await runtime.exit(ids[exits], 3)
    exited = await control_plane.wait_for(KernelExited, lambda k: k.kernel_id == exits)
    assert (exited.exit_code, exited.oom_killed, exited.reason) == (3, False, "exited with code 3")
    await runtime.oom_kill(ids[hog])
    killed = await control_plane.wait_for(KernelExited, lambda k: k.kernel_id == hog)
    assert (killed.exit_code, killed.reason) == (137, "killed: out of memory (limit 128 MiB)")

    await runtime.add_image(
        ImageRecord("sha256:" + "ef" * 32, ["test/r:4"], 1, "arm64", IMAGE.labels)
    )
    changed = await control_plane.wait_for(ImagesChanged)
    assert [(i.name, i.architecture) for i in changed.images] == [
        ("test/python:1", "x86_64"),
        ("test/r:4", "aarch64"),
    ]
    await node.stop()
