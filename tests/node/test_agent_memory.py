"""The node agent on the in-memory runtime: what it reports of containers, without Docker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from node import NodeConfig, kernels
from node.kernels import LABEL_KERNEL, LABEL_NODE, LABEL_SESSION
from node.runtime import ContainerSpec, ImageRecord
from node.testing import FakeControlPlane, MemoryRuntime, NodeProcess
from tests.node.conftest import OWNER, TOKEN
from wire import CreateKernel, ImagesChanged, KernelExited

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


class _BrokenImage(MemoryRuntime):
    """Its containers' program fails as soon as it starts, as python3 does with a bad PYTHONHOME."""

    async def start(self, container_id: str) -> None:
        await super().start(container_id)
        self.write_log(container_id, "Fatal Python error: init_fs_encoding\n")
        await self.exit(container_id, 1)


async def _node(
    nursery: trio.Nursery, state_dir: Path, control_plane: FakeControlPlane, runtime: MemoryRuntime
) -> str:
    node_id = f"i-memory-{uuid.uuid4().hex[:8]}"
    config = NodeConfig(
        state_dir, control_plane.url, TOKEN, node_id=node_id, work_quota=False, warm_pool=0
    )
    await NodeProcess(nursery, config, runtime).start()
    await control_plane.registration()
    return node_id


async def _create(control_plane: FakeControlPlane, kernel_id: str, cpu: str) -> str:
    """The node's error for a create that must fail."""
    reply = await control_plane.request(
        lambda req_id: CreateKernel(
            req_id, kernel_id, "s", OWNER, "test/python:1", {"cpu": cpu, "mem": "128m"}
        )
    )
    assert not reply.ok and reply.error is not None
    return reply.error


async def test_a_kernel_that_stops_while_starting_fails_at_once(
    nursery: trio.Nursery, state_dir: Path, control_plane: FakeControlPlane
) -> None:
    runtime = _BrokenImage([IMAGE])
    node_id = await _node(nursery, state_dir, control_plane, runtime)
    kernel_id = str(uuid.uuid4())
    started = trio.current_time()
    error = await _create(control_plane, kernel_id, cpu="0.02")
    assert error == (
        f"kernel {kernel_id} stopped while starting (exited with code 1); its last output:\n"
        "Fatal Python error: init_fs_encoding"
    )
    # the engine's "die" event said so; nothing waited for the runner's time (150 s at 0.02)
    assert trio.current_time() - started < 10
    assert await runtime.containers({LABEL_NODE: node_id}) == []
    assert list((state_dir / "k").iterdir()) == []


async def test_a_runner_that_never_answers_is_given_up_in_time(
    nursery: trio.Nursery,
    state_dir: Path,
    control_plane: FakeControlPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 30 s with a whole CPU; a small share stretches it, up to a bound below the control
    # plane's create timeout (180 s)
    assert kernels.ready_timeout(None) == kernels.ready_timeout(2_000_000_000) == 30
    assert kernels.ready_timeout(250_000_000) == 120
    assert kernels.ready_timeout(20_000_000) == kernels.READY_TIMEOUT_MAX == 150
    # the memory runtime runs no runner: none ever answers
    monkeypatch.setattr(kernels, "READY_TIMEOUT", 0.3)
    runtime = MemoryRuntime([IMAGE])
    node_id = await _node(nursery, state_dir, control_plane, runtime)
    for cpu in ("2", "0.02"):  # a small share starts with a whole CPU: the same time
        kernel_id = str(uuid.uuid4())
        started = trio.current_time()
        error = await _create(control_plane, kernel_id, cpu)
        assert error == f"kernel {kernel_id} did not become ready within 0.3 s"
        assert 0.3 <= trio.current_time() - started < 5
    assert await runtime.containers({LABEL_NODE: node_id}) == []


async def test_a_kernel_with_a_small_share_starts_with_a_whole_cpu(
    nursery: trio.Nursery, state_dir: Path, control_plane: FakeControlPlane
) -> None:
    runtime = MemoryRuntime([IMAGE])
    await _node(nursery, state_dir, control_plane, runtime)
    kernel_id = str(uuid.uuid4())
    while_starting: list[int | None] = []

    async def runner() -> None:
        """Plays the kernel's runner: dials the node (again until it listens), answers a ping."""
        path = state_dir / "k" / kernels.short_id(kernel_id) / "sock" / "node.sock"
        while True:
            try:
                stream = await trio.open_unix_socket(str(path))
                break
            except OSError:
                await trio.sleep(0.05)  # as the runner's own backoff
        async with stream:
            assert b'"op":"ping"' in await stream.receive_some()
            [state] = await runtime.containers({LABEL_KERNEL: kernel_id})
            while_starting.append(state.nano_cpus)
            await stream.send_all(b'{"kind": "pong", "pid": 7}\n')

    nursery.start_soon(runner)
    reply = await control_plane.request(
        lambda req_id: CreateKernel(
            req_id, kernel_id, "s", OWNER, "test/python:1", {"cpu": "0.02", "mem": "128m"}
        )
    )
    assert reply.ok, reply.error
    assert while_starting == [1_000_000_000]
    # its own share before the create's answer, so before any of the session's code runs
    [state] = await runtime.containers({LABEL_KERNEL: kernel_id})
    assert (state.nano_cpus, state.mem_limit) == (20_000_000, 128 * 2**20)
