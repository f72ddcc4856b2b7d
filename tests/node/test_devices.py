"""Accelerator devices and live statistics on a real Docker engine: a node with four mock GPUs
hands out distinct ones, visible inside the containers, refuses a third kernel, and finds what
its kernels hold again after a restart; the sampler reads a busy kernel's cgroup."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import docker
import pytest
import trio

from node import NodeConfig
from node.accelerators import Accelerators
from node.runtime import EngineInfo
from node.stats import Sampler, Tracked
from node.testing import FakeControlPlane, NodeProcess, text_of
from tests.node.conftest import OWNER
from wire import CreateKernel, DestroyKernel, Heartbeat, Reply

pytestmark = [pytest.mark.trio, pytest.mark.docker]

# a busy loop holding 64 MiB, left running in the background of the kernel
BUSY = (
    "import subprocess, sys; subprocess.Popen([sys.executable, '-c',"
    " 'x = bytearray(64 * 2**20)\\nwhile True: x[0] = 1'], start_new_session=True,"
    " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"
)
ENV = "import os; print(os.environ['SHIPYARD_MOCK_DEVICES'], os.environ['CUDA_VISIBLE_DEVICES'])"


@pytest.fixture
def mock_config(node_config: NodeConfig, tmp_path: Path) -> NodeConfig:
    path = tmp_path / "mock-devices.toml"
    path.write_text(
        "".join(f'[[devices]]\nid = "mock-gpu{i}"\nutil_pct = {20.0 * i}\n' for i in range(4))
    )
    return dataclasses.replace(node_config, accelerators=["mock"], mock_devices=path)


@pytest.fixture
async def gpu_node(
    nursery: trio.Nursery, mock_config: NodeConfig, control_plane: FakeControlPlane
) -> NodeProcess:
    process = NodeProcess(nursery, mock_config)
    await process.start()
    await control_plane.registration()
    return process


Create = Callable[..., Awaitable[tuple[str, Reply]]]


@pytest.fixture
def create(control_plane: FakeControlPlane, kernel_image: str) -> Create:
    async def create(gpus: int) -> tuple[str, Reply]:
        kernel_id = str(uuid.uuid4())
        reply = await control_plane.request(
            lambda req_id: CreateKernel(
                req_id, kernel_id, session_id=str(uuid.uuid4()), owner_access_key=OWNER,
                image=kernel_image, slots={"cpu": "1", "mem": "128m", "cuda.device": str(gpus)},
                environ={"CUDA_VISIBLE_DEVICES": "0,1,2,3"},  # a session cannot widen its view
            )
        )  # fmt: skip
        return kernel_id, reply

    return create


async def _visible(control_plane: FakeControlPlane, kernel_id: str) -> tuple[set[str], str]:
    ids, ordinals = text_of(await control_plane.execute(kernel_id, ENV)).split()
    return set(ids.split(",")), ordinals


async def test_register_offers_the_devices_and_heartbeats_carry_each_kernels_stats(
    mock_config: NodeConfig, nursery: trio.Nursery, control_plane: FakeControlPlane, create: Create
) -> None:
    process = NodeProcess(nursery, dataclasses.replace(mock_config, heartbeat_interval=0.2))
    await process.start()
    register = await control_plane.registration()
    assert register.slots["cuda.device"] == "4"
    assert {"cpu", "mem"} <= set(register.slots)
    devices = {d["id"]: d for d in register.accelerators}
    assert set(devices) == {f"mock-gpu{i}" for i in range(4)}
    assert devices["mock-gpu0"]["plugin"] == "mock" and devices["mock-gpu0"]["memory_bytes"] > 0

    kernel_id, reply = await create(1)
    assert reply.ok, reply.error
    text_of(await control_plane.execute(kernel_id, BUSY))
    beat = await control_plane.wait_for(
        Heartbeat,
        lambda h: any(k.kernel_id == kernel_id and k.cpu_pct > 5 for k in h.kernels),
    )
    assert beat.mem_total_bytes > beat.mem_used_bytes > 0
    assert len(beat.devices) == 4
    (stat,) = [k for k in beat.kernels if k.kernel_id == kernel_id]
    assert stat.mem_limit == 128 * 2**20 and stat.mem_used > 32 * 2**20
    (held,) = stat.devices
    assert held.plugin == "mock" and held.util_pct == 20.0 * int(held.device_id[-1])


async def test_two_kernels_get_distinct_mock_gpus_and_a_third_is_refused(
    gpu_node: NodeProcess, control_plane: FakeControlPlane, create: Create
) -> None:
    first, reply = await create(2)
    assert reply.ok, reply.error
    second, reply = await create(2)
    assert reply.ok, reply.error
    seen_first, ordinals = await _visible(control_plane, first)
    seen_second, _ = await _visible(control_plane, second)
    assert ordinals == "0,1"
    assert len(seen_first) == len(seen_second) == 2
    assert seen_first | seen_second == {f"mock-gpu{i}" for i in range(4)}
    _, reply = await create(2)
    assert not reply.ok
    assert "not enough free cuda.device: asked for 2, 0 of 4 free" in (reply.error or "")
    # once a kernel ends, its devices go to the next one
    reply = await control_plane.request(lambda req_id: DestroyKernel(req_id, first))
    assert reply.ok, reply.error
    fourth, reply = await create(2)
    assert reply.ok, reply.error
    assert (await _visible(control_plane, fourth))[0] == seen_first


async def test_a_restarted_node_holds_its_kernels_devices_again(
    gpu_node: NodeProcess, control_plane: FakeControlPlane, create: Create
) -> None:
    _, reply = await create(3)
    assert reply.ok, reply.error
    await gpu_node.stop()
    await gpu_node.start()
    await control_plane.registration(2)
    _, reply = await create(2)
    assert not reply.ok and "1 of 4 free" in (reply.error or "")
    _, reply = await create(1)
    assert reply.ok, reply.error


async def test_sampler_reads_a_busy_kernels_cgroup(
    gpu_node: NodeProcess,
    mock_config: NodeConfig,
    control_plane: FakeControlPlane,
    create: Create,
    docker_client: docker.DockerClient,
) -> None:
    kernel_id, reply = await create(1)
    assert reply.ok, reply.error
    await control_plane.execute(kernel_id, BUSY)
    [container] = docker_client.containers.list(
        filters={"label": f"ai.shipyard.kernel-id={kernel_id}"}
    )
    held = json.loads(container.labels["ai.shipyard.devices"])
    tracked = Tracked(kernel_id, container.attrs["State"]["Pid"], held)
    accelerators = Accelerators.open(mock_config, EngineInfo(frozenset({"runc"})))
    sampler = Sampler(accelerators)
    first = await trio.to_thread.run_sync(sampler.sample, [tracked])
    await trio.sleep(0.5)  # a rate needs two samples some time apart
    second = await trio.to_thread.run_sync(sampler.sample, [tracked])
    stat = second.kernels[kernel_id]
    assert first.kernels[kernel_id].cpu_pct == 0.0  # no previous sample yet
    # one busy core under a 1-cpu limit; the share it gets depends on what else the host runs
    assert 0 < stat.cpu_pct <= 110, stat
    assert stat.cpu_used_ms > 0
    assert stat.mem_used >= 64 * 2**20 and stat.mem_limit == 128 * 2**20, stat
    assert (stat.net_rx, stat.net_tx) == (0, 0)  # --network none: loopback only
    (device,) = stat.devices
    assert device.plugin == "mock" and [device.device_id] == list(held["mock"])
    assert device.util_pct == 20.0 * int(device.device_id.removeprefix("mock-gpu"))
    assert [d.device_id for d in second.node.devices] == [f"mock-gpu{i}" for i in range(4)]
    assert second.node.mem_total > second.node.mem_used > 0
    # a kernel that is gone is left out, not an error
    third = await trio.to_thread.run_sync(sampler.sample, [tracked, Tracked("gone", 2**22 + 7, {})])
    assert set(third.kernels) == {kernel_id}
