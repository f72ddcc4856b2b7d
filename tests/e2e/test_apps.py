"""Interactive access through the relay, end to end: a real appliance (control plane, node,
Docker, containers on `--network none`), driven by the `shipyard` CLI as a user would.

The apps image is the test image plus Backend.AI's service-ports label and service definitions
(an HTTP file server of the work folder, and a TCP echo), committed from a container here:
nothing is pulled.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.testing import Appliance, running_appliance
from tests.apps_image import APPS_IMAGE, build_apps_image

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def appliance(test_image: str) -> Iterator[Appliance]:
    build_apps_image(test_image)
    with running_appliance() as appliance:
        created = appliance.cli("session", "create", "-i", APPS_IMAGE, "-n", "apps1")
        assert created.returncode == 0, created.stderr + appliance.up_log()
        yield appliance


def _tunnel(appliance: Appliance, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`shipyard app ...` running, and the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "app", *args],
        env=appliance.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(\w+)://([\d.]+):(\d+)/", line)
    assert match, line + (proc.stderr.read() if proc.stderr else "")
    return proc, match.group(0)


def _stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C it; what it wrote on stderr."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return err


def test_apps_are_listed_from_the_image_label(appliance: Appliance) -> None:
    listed = appliance.cli("app", "apps1")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"web\s+http\s+8080", listed.stdout)
    assert re.search(r"echo\s+tcp\s+9000", listed.stdout)
    assert re.search(r"inetd-echo\s+tcp\s+9100", listed.stdout)
    info = json.loads(appliance.cli("session", "info", "apps1", "--json").stdout)
    assert info["servicePorts"] == [
        {"name": "web", "protocol": "http", "ports": [8080]},
        {"name": "echo", "protocol": "tcp", "ports": [9000]},
        {"name": "inetd-echo", "protocol": "tcp", "ports": [9100]},
    ]


def test_an_app_starts_on_demand_and_serves_through_the_relay(appliance: Appliance) -> None:
    # 100 MiB of random bytes written in the kernel, fetched over HTTP through the relay
    made = appliance.cli(
        "session", "exec", "apps1", "-c",
        "import hashlib, os\n"
        "data = os.urandom(100 * 2**20)\n"
        "open('big.bin', 'wb').write(data)\n"
        "print(hashlib.sha256(data).hexdigest())",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    digest = made.stdout.strip()
    proc, url = _tunnel(appliance, "apps1", "web")
    try:
        assert url.startswith("http://127.0.0.1:")
        started = time.monotonic()
        sha = hashlib.sha256()
        with httpx.stream("GET", url + "big.bin", timeout=120) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                sha.update(chunk)
        elapsed = time.monotonic() - started
        assert sha.hexdigest() == digest
        print(f"relay: 100 MiB in {elapsed:.2f} s = {100 / elapsed:.1f} MiB/s (incl. app start)")
    finally:
        _stop(proc)


def test_tcp_app_echoes_both_ways_and_closes_cleanly(appliance: Appliance) -> None:
    proc, url = _tunnel(appliance, "apps1", "echo", "--bind", "127.0.0.1:0")
    try:
        host, port = url.removeprefix("tcp://").rstrip("/").split(":")
        payload = os.urandom(8 * 2**20)
        with socket.create_connection((host, int(port)), timeout=60) as conn:
            received = bytearray()
            conn.setblocking(False)
            view = memoryview(payload)
            while len(received) < len(payload):
                readable, writable, _ = select.select([conn], [conn] if view else [], [], 60)
                assert readable or writable, "the relay stalled"
                if writable:
                    view = view[conn.send(view[:65536]) :]
                if readable:
                    received += conn.recv(1 << 20)
            assert bytes(received) == payload
    finally:
        _stop(proc)


def test_an_inetd_app_gets_a_connection_of_its_own(appliance: Appliance) -> None:
    """As `shipyard ssh` runs dropbear -i: `--stdio` joins this command to a process started
    for this one connection. Its connection's peer is nameless; the stream's own socket's is
    the node's socket path, longer than dropbear can format (it then closed before a banner)."""
    argv = [sys.executable, "-m", "shipyard", "app", "apps1", "inetd-echo", "--stdio"]
    with subprocess.Popen(
        argv, env=appliance.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(b"ping\n")
            proc.stdin.flush()
            echoed = _read_until(proc.stdout.fileno(), b"ping\n", timeout=60)
            assert echoed == b"peer ok\nping\n"
            proc.stdin.close()  # ends the app's input: it exits, and the stream closes
            assert proc.wait(timeout=30) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_unknown_app_and_other_keypairs_are_refused(appliance: Appliance) -> None:
    missing = appliance.cli("app", "apps1", "jupyter")
    assert missing.returncode == 1
    assert "has no app 'jupyter'" in missing.stderr


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, pattern: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while pattern not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {pattern!r} in {seen[-500:]!r}"
        if select.select([fd], [], [], remaining)[0]:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def test_shell_runs_commands_sees_resizes_and_exits_with_the_status(
    appliance: Appliance,
) -> None:
    master, slave = os.openpty()
    _set_size(slave, 30, 100)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "session", "shell", "apps1"],
        env=appliance.env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    try:
        # a shell discards what was typed before it set its terminal up: wait for its prompt
        _read_until(master, b"$ ")
        os.write(master, b"echo $((6*7)); stty size\r")
        assert re.search(rb"\r\n42\r\n30 100\r\n", _read_until(master, b"30 100\r\n"))
        _set_size(master, 40, 120)
        proc.send_signal(signal.SIGWINCH)
        # the resize and these keys travel separately: wait in the shell until it sees it
        wait = b'until [ "$(stty size)" = "40 120" ]; do sleep 0.1; done; echo RE""SIZED\r'
        os.write(master, wait)
        _read_until(master, b"\r\nRESIZED\r\n", timeout=10)
        # Ctrl-C interrupts the remote command, not the terminal (else this waits 30 s)
        os.write(master, b"echo sleeping; sleep 30\r")
        _read_until(master, b"\r\nsleeping\r\n")
        os.write(master, b"\x03")
        os.write(master, b"echo after-interrupt\r")
        _read_until(master, b"\r\nafter-interrupt\r\n", timeout=10)
        os.write(master, b"exit 7\r")
        assert proc.wait(timeout=30) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_a_sessions_streams_end_with_it(test_image: str) -> None:
    with running_appliance() as appliance:
        created = appliance.cli("session", "create", "-i", APPS_IMAGE, "-n", "short")
        assert created.returncode == 0, created.stderr
        proc, url = _tunnel(appliance, "short", "echo")
        try:
            host, port = url.removeprefix("tcp://").rstrip("/").split(":")
            with socket.create_connection((host, int(port)), timeout=60) as conn:
                conn.sendall(b"ping")
                assert conn.recv(4) == b"ping"
                removed = appliance.cli("session", "rm", "short")
                assert removed.returncode == 0, removed.stderr
                conn.settimeout(30)
                assert conn.recv(1) == b""  # closed, not hung
        finally:
            _stop(proc)


def test_ssh_key_is_generated_kept_and_shown(appliance: Appliance, tmp_path: Path) -> None:
    none_yet = appliance.cli("ssh-key")
    assert none_yet.returncode == 1
    assert "no SSH key pair yet" in none_yet.stderr
    key = tmp_path / "id_shipyard"
    made = appliance.cli("ssh-key", "generate", "-o", str(key))
    assert made.returncode == 0, made.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True)
    assert derived.stdout.split()[:2] == made.stdout.split()[:2]
    assert appliance.cli("ssh-key").stdout == made.stdout
