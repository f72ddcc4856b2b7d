"""systemd's notification protocol: the helper, and both services using it. A datagram socket
here plays systemd's end (NOTIFY_SOCKET); real systemd is in test_systemd_e2e.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from controlplane.config import ControlPlaneConfig
from hostlib import sdnotify
from shipyard.testing import free_port


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    directory = tempfile.mkdtemp(prefix="sy-notify-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)  # a bound, not a wait: a loaded machine takes a while to import and migrate
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def test_notify_sends_the_fields(notify_socket: socket.socket) -> None:
    assert sdnotify.ready("serving")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=serving"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"shipyard-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"


def test_nothing_happens_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.ready() is False
    assert sdnotify.watchdog_interval() is None


def test_watchdog_interval_is_half_and_only_for_the_main_process(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process of the service
    assert sdnotify.watchdog_interval() is None


@pytest.mark.trio
async def test_watchdog_pings_at_half_the_interval(
    notify_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    with trio.move_on_after(46):  # pings at 0, 15, 30 and 45 s
        await sdnotify.watchdog()
    notify_socket.settimeout(0)
    pings = []
    while True:
        try:
            pings.append(notify_socket.recv(100))
        except BlockingIOError:
            break
    assert pings == [b"WATCHDOG=1"] * 4


def test_the_control_plane_says_ready_once_it_serves(
    notify_socket: socket.socket, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "controlplane.toml"
    ControlPlaneConfig(state_dir=tmp_path, node_token="t", port=port).dump(config)
    env = {**os.environ, "WATCHDOG_USEC": "2000000"}  # 2 s: a ping every second
    server = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "controlplane", "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = notify_socket.recv(4096)
        # READY only once the API answers: a request right now must succeed
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        messages = [first]
        deadline = time.monotonic() + 5
        while messages.count(b"WATCHDOG=1") < 2 and time.monotonic() < deadline:
            messages.append(notify_socket.recv(4096))
        assert b"READY=1\nSTATUS=serving on 127.0.0.1:" + str(port).encode() in messages
        assert messages.count(b"WATCHDOG=1") >= 2
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.trio
@pytest.mark.docker
async def test_the_node_says_ready_once_it_registered(
    notify_socket: socket.socket, nursery: trio.Nursery
) -> None:
    from node.config import NodeConfig
    from node.testing import FakeControlPlane, NodeProcess

    notify_socket.settimeout(0)
    control_plane = FakeControlPlane("token")
    await nursery.start(control_plane.serve)
    state = Path(tempfile.mkdtemp(prefix="sy", dir="/tmp"))
    node_id = f"i-test-notify-{os.getpid()}"
    config = NodeConfig(
        state_dir=state, controlplane_url=control_plane.url, node_token="token", node_id=node_id
    )
    node = NodeProcess(nursery, config)
    try:
        await node.start()
        await control_plane.registration()
        with trio.fail_after(10):
            while True:
                try:
                    message = notify_socket.recv(4096)
                    break
                except BlockingIOError:
                    await trio.sleep(0.05)
        assert message == (
            b"READY=1\nSTATUS=registered with ws://127.0.0.1:"
            + str(control_plane.port).encode()
            + b"/node/connect as "
            + node_id.encode()
        )
    finally:
        await node.stop()
        await trio.run_process(["rm", "-rf", str(state)])
