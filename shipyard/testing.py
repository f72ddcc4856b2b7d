"""A real appliance for tests and benchmarks: `shipyard up` as a child process (real control
plane, node and Docker engine), driven through the `shipyard` CLI as a user would."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import tomli_w

from node.hostfs import remove_kernel_dirs

TEST_IMAGE = "shipyard-test/python:3.11"
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:`port`. SO_REUSEADDR as servers set it: without it, the
    TIME_WAIT of a connection the server closed first refuses the bind for a minute."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(predicate: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Appliance:
    state_dir: Path
    port: int
    node_id: str
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.state_dir / "up.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shipyard",
                "up",
                "--state-dir",
                str(self.state_dir),
                "--port",
                str(self.port),
                "--node-id",
                self.node_id,
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"shipyard up exited with {self.process.returncode}:\n{self.up_log()}"
                )
            try:
                health = httpx.get(f"{self.endpoint}/health", timeout=1).json()
            except httpx.HTTPError:
                return False
            return bool(health["nodesAlive"] >= 1 and (self.state_dir / "client.env").exists())

        wait_for(ready, "the appliance to come up", START_TIMEOUT)

    def up_log(self) -> str:
        return (self.state_dir / "up.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "BACKEND_"))}
        for line in (self.state_dir / "client.env").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").partition("=")
                env[key] = shlex.split(value)[0]
        return env

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 120, cwd: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shipyard", *args],
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )

    def containers(self, **labels: str) -> list[str]:
        client = docker.from_env()
        try:
            filters = [f"ai.shipyard.node-id={self.node_id}"]
            filters += [f"ai.shipyard.{k.replace('_', '-')}={v}" for k, v in labels.items()]
            found = client.containers.list(all=True, filters={"label": filters})
            return [c.id for c in found]
        finally:
            client.close()

    def remove_containers(self) -> None:
        client = docker.from_env()
        try:
            for container_id in self.containers():
                client.containers.get(container_id).remove(force=True)
        finally:
            client.close()


@contextmanager
def running_appliance(
    extra_args: list[str] | None = None,
    alias_to: str = TEST_IMAGE,
    *,
    controlplane: dict[str, Any] | None = None,
    node: dict[str, Any] | None = None,
) -> Iterator[Appliance]:
    """Start an appliance in a fresh state directory with `python` aliased to `alias_to`; on
    exit stop it and remove every container its node made. `controlplane` and `node` are
    settings for its controlplane.toml and node.toml (`shipyard up` keeps what they say)."""
    state = Path(tempfile.mkdtemp(prefix="sy-", dir="/tmp"))  # short: Unix socket paths
    appliance = Appliance(state, free_port(), f"i-test-{uuid.uuid4().hex[:8]}", extra_args or [])
    # what `shipyard up` fills in itself
    placeholders = {"state_dir": str(state), "node_token": "replaced by shipyard up"}
    if controlplane:
        (state / "controlplane.toml").write_text(tomli_w.dumps({**placeholders, **controlplane}))
    # no warm kernels unless asked for: the pool fills from the default image where a machine
    # has it (`./dev up` builds it), and its containers are none of a test's business
    node_settings = {**placeholders, "controlplane_url": appliance.endpoint, "warm_pool": 0}
    (state / "node.toml").write_text(tomli_w.dumps({**node_settings, **(node or {})}))
    try:
        appliance.start()
        alias = appliance.cli("image", "alias", "python", alias_to)
        assert alias.returncode == 0, alias.stderr
        yield appliance
    finally:
        if appliance.process is not None:
            appliance.stop()
        appliance.remove_containers()
        remove_kernel_dirs(state / "node")  # their work filesystems are mounted
        subprocess.run(["rm", "-rf", str(state)], check=False)
