"""The node's link to the control plane: register, heartbeat, reconnect, restart, events."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import docker
import pytest
import trio

from node import NodeConfig
from node.testing import FakeControlPlane, NodeProcess, text_of
from tests.node.conftest import TOKEN, NewKernel
from wire import (
    PROTOCOL,
    FrameRejected,
    GetLogs,
    Heartbeat,
    ImagesChanged,
    KernelInfo,
    Reply,
    Slots,
)

pytestmark = [pytest.mark.trio, pytest.mark.docker]


def _mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


async def test_register_carries_slots_images_and_no_kernels(
    node: NodeProcess, control_plane: FakeControlPlane, kernel_image: str
) -> None:
    register = await control_plane.registration()
    assert register.node_id == node.config.node_id
    assert register.network_mode == "none"
    assert register.architecture == os.uname().machine
    assert (
        register.slots == Slots({"cpu": os.cpu_count() or 1, "mem": _mem_total() - 2**30}).to_wire()
    )
    [image] = [i for i in register.images if i.name == kernel_image]
    assert image.digest.startswith("sha256:")
    assert image.size_bytes > 0
    assert image.architecture == os.uname().machine
    assert register.kernels == []
    assert register.protocol == PROTOCOL
    assert control_plane.frames[0] == register  # the first frame on the connection

    heartbeat = await control_plane.wait_for(Heartbeat)
    assert 0 <= heartbeat.cpu_pct <= 100
    assert 0 < heartbeat.mem_used_bytes < _mem_total()


async def test_configured_capacity(
    nursery: trio.Nursery, node_config: NodeConfig, control_plane: FakeControlPlane
) -> None:
    config = dataclasses.replace(node_config, cpu=1.5, mem="3g")
    node = NodeProcess(nursery, config)
    await node.start()
    register = await control_plane.registration()
    assert Slots.from_wire(register.slots) == {"cpu": Decimal("1.5"), "mem": 3 * 2**30}
    await node.stop()


async def test_wrong_token_is_retried(
    nursery: trio.Nursery, node_config: NodeConfig, control_plane: FakeControlPlane
) -> None:
    node = NodeProcess(nursery, dataclasses.replace(node_config, node_token="wrong"))
    await node.start()
    await control_plane.wait_until(lambda: control_plane.rejected >= 2)
    assert control_plane.connections == 0
    await node.stop()


async def test_node_waits_for_a_control_plane_that_is_not_up_yet(
    nursery: trio.Nursery, node_config: NodeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a free port nobody listens on, for now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = dataclasses.replace(node_config, controlplane_url=f"http://127.0.0.1:{port}")
    node = NodeProcess(nursery, config)
    await node.start()
    with trio.fail_after(10):  # the control plane stays down until the node has retried
        while True:
            if sum("cannot connect" in r.getMessage() for r in caplog.records) >= 2:
                break
            await trio.sleep(0.05)  # polling the log: it has no event to wait on
    late = FakeControlPlane(TOKEN, port=port)
    await nursery.start(late.serve)
    assert (await late.registration()).node_id == config.node_id
    await node.stop()


async def test_reconnect_after_the_control_plane_drops_the_connection(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    await control_plane.execute(kernel_id, "kept = 'still here'")
    await control_plane.drop()
    register = await control_plane.registration(2)
    assert control_plane.connections == 2
    [info] = register.kernels
    assert (info.kernel_id, info.running) == (kernel_id, True)
    outputs = await control_plane.execute(kernel_id, "print(kept)")
    assert text_of(outputs) == "still here\n"


async def test_frames_the_node_cannot_read_are_answered_and_the_link_stays(
    node: NodeProcess, control_plane: FakeControlPlane
) -> None:
    # a frame of some newer control plane: said so, and nothing else happens
    await control_plane.send_text('{"type": "open_tunnel", "port": 22}')
    rejected = await control_plane.wait_for(FrameRejected)
    assert rejected.frame_type == "open_tunnel"
    # a request it cannot read still gets its one Reply, so nobody waits for it
    await control_plane.send_text('{"type": "resize_kernel", "req_id": "r-1", "cpu": 4}')
    reply = await control_plane.wait_for(Reply, lambda r: r.req_id == "r-1")
    assert not reply.ok and "resize_kernel" in reply.error
    # still the same connection, still answering
    answer = await control_plane.request(lambda req_id: GetLogs(req_id, "no-such-kernel"))
    assert not answer.ok and "no such kernel" in answer.error
    assert control_plane.connections == 1


async def test_restarted_node_adopts_its_kernels(
    node: NodeProcess,
    new_kernel: NewKernel,
    control_plane: FakeControlPlane,
    docker_client: docker.DockerClient,
) -> None:
    kernel_id = await new_kernel()
    stopped_id = await new_kernel()
    await control_plane.execute(kernel_id, "kept = 6 * 7")
    await control_plane.execute(stopped_id, "import os; os._exit(5)")
    with trio.fail_after(5):
        await node.stop()  # also proves the engine-events thread ended
    [container] = docker_client.containers.list(
        filters={"label": f"ai.shipyard.kernel-id={kernel_id}"}
    )
    assert container.status == "running"  # stopping the node leaves kernels alone

    await node.start()
    register = await control_plane.registration(2)
    kernels = {k.kernel_id: k for k in register.kernels}
    assert kernels[kernel_id] == KernelInfo(
        kernel_id, kernels[kernel_id].session_id, container.id, running=True
    )
    assert (kernels[stopped_id].running, kernels[stopped_id].exit_code) == (False, 5)
    outputs = await control_plane.execute(kernel_id, "print(kept)")
    assert text_of(outputs) == "42\n"


async def test_image_changes_are_reported(
    node: NodeProcess,
    control_plane: FakeControlPlane,
    kernel_image: str,
    docker_client: docker.DockerClient,
) -> None:
    extra = f"shipyard-test/python:node-{uuid.uuid4().hex[:8]}"
    repo, tag = extra.split(":")
    image = docker_client.images.get(kernel_image)
    try:
        await trio.to_thread.run_sync(lambda: image.tag(repo, tag))
        added = await control_plane.wait_for(
            ImagesChanged, lambda m: extra in {i.name for i in m.images}
        )
        assert {i.digest for i in added.images if i.name == extra} == {image.id}
    finally:
        await trio.to_thread.run_sync(lambda: docker_client.images.remove(extra))
    removed = await control_plane.wait_for(
        ImagesChanged,
        lambda m: extra not in {i.name for i in m.images},
        since=control_plane.frames.index(added) + 1,
    )
    assert kernel_image in {i.name for i in removed.images}


async def test_cli_serves_and_stops_on_sigterm(
    node_config: NodeConfig, control_plane: FakeControlPlane, tmp_path: Path
) -> None:
    config_path = tmp_path / "node.toml"
    node_config.dump(config_path)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "shipyard", "node", "serve", "--config", str(config_path)]
    )
    try:
        await control_plane.registration()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_rejects_a_bad_config(tmp_path: Path) -> None:
    config_path = tmp_path / "node.toml"
    config_path.write_text('state_dir = "/tmp/x"\ncontrolplane_url = "http://x"\nnode_tokn = "t"\n')
    result = await trio.run_process(
        [sys.executable, "-m", "shipyard", "node", "serve", "--config", str(config_path)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1
    message = result.stderr.decode().strip()
    assert message == (
        f'Error: {config_path}: key "node_token" is required;'
        ' unknown key "node_tokn" (did you mean "node_token"?)'
    )
