"""A cluster of three real node processes on one machine (issue 10 item 5), sharing its Docker
engine, each with its own state directory, identity and mock GPUs: the appliance's own node and
two that joined with join tokens. Both CLIs list them with their slots and devices; a node that
stops answering is LOST within the heartbeat timeout and its session says why; a node whose join
token is revoked is TERMINATED and cannot join again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import tomli_w

from node.hostfs import remove_kernel_dirs
from shipyard.testing import Appliance, running_appliance, wait_for
from tests.compat.conftest import BackendAI
from tests.e2e.test_accelerators import write_mock_devices

pytestmark = pytest.mark.docker

HEARTBEAT_TIMEOUT = 8.0
HEARTBEAT = 1.0


@dataclass
class NodeServe:
    """`shipyard node serve` with its own node.toml, as a machine that joined would run it."""

    node_id: str
    token: str
    appliance: Appliance
    slot: str
    state: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sy-n-", dir="/tmp")))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        devices = write_mock_devices(self.state / "mock.toml", 2, prefix=f"{self.node_id}-gpu")
        devices.write_text(f'slot = "{self.slot}"\n' + devices.read_text())
        config = {
            "state_dir": str(self.state / "node"),
            "controlplane_url": self.appliance.endpoint,
            "node_token": self.token,
            "node_id": self.node_id,
            "heartbeat_interval": HEARTBEAT,
            "warm_pool": 0,  # its containers are the sessions' only
            "accelerators": ["mock"],
            "mock_devices": str(devices),
        }
        (self.state / "node.toml").write_text(tomli_w.dumps(config))
        with open(self.state / "node.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shipyard", "node", "serve", "--config",
                 str(self.state / "node.toml")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def log(self) -> str:
        return (self.state / "node.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None
        client = docker.from_env()
        try:
            filters = {"label": [f"ai.shipyard.node-id={self.node_id}"]}
            for container in client.containers.list(all=True, filters=filters):
                container.remove(force=True)
        finally:
            client.close()
        remove_kernel_dirs(self.state / "node")
        subprocess.run(["rm", "-rf", str(self.state)], check=False)


@pytest.fixture(scope="module")
def cluster(test_image: str) -> Iterator[tuple[Appliance, list[NodeServe]]]:
    with tempfile.TemporaryDirectory(prefix="sy-mock-") as tmp:
        devices = write_mock_devices(Path(tmp) / "mock-devices.toml", 2)
        with running_appliance(
            ["--mock-devices", str(devices)],
            controlplane={"node_heartbeat_timeout": HEARTBEAT_TIMEOUT},
            node={"heartbeat_interval": HEARTBEAT},
        ) as appliance:
            suffix = uuid.uuid4().hex[:6]
            nodes = []
            try:
                # one takes whole devices, the other shares: a request picks its node
                for name, slot in (("b", "cuda.shares"), ("c", "cuda.device")):
                    created = appliance.cli("node", "token", "create", "--ttl", "1h", "--json")
                    assert created.returncode == 0, created.stderr
                    token = json.loads(created.stdout)["token"]
                    node = NodeServe(f"i-{name}-{suffix}", token, appliance, slot)
                    nodes.append(node)
                    node.start()
                wait_for(lambda: len(_alive(appliance)) == 3, "three nodes", 60)
                yield appliance, nodes
            finally:
                for node in nodes:
                    node.stop()


def _nodes(appliance: Appliance) -> dict[str, dict[str, Any]]:
    listed = appliance.cli("admin", "node", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    return {n["id"]: n for n in json.loads(listed.stdout)["items"]}


def _alive(appliance: Appliance) -> list[str]:
    return [n for n, item in _nodes(appliance).items() if item["status"] == "ALIVE"]


def _session(appliance: Appliance, name: str) -> dict[str, Any]:
    result = appliance.cli("session", "info", name, "--json")
    assert result.returncode == 0, result.stderr
    info: dict[str, Any] = json.loads(result.stdout)
    return info


def test_both_clis_list_the_three_nodes_with_slots_and_devices(
    cluster: tuple[Appliance, list[NodeServe]], tmp_path: Path
) -> None:
    appliance, (b, c) = cluster
    nodes = _nodes(appliance)
    assert nodes[b.node_id]["availableSlots"]["cuda.shares"] == "2"
    assert nodes[c.node_id]["availableSlots"]["cuda.device"] == "2"
    assert {d["id"] for d in nodes[c.node_id]["devices"]} == {f"{c.node_id}-gpu{i}" for i in (0, 1)}
    table = appliance.cli("admin", "node", "ls").stdout
    for node_id in (appliance.node_id, b.node_id, c.node_id):
        assert node_id in table
    assert "cuda.device=0/2" in table

    executable = os.environ.get("SHIPYARD_TEST_BAI")
    if not executable:
        pytest.skip("SHIPYARD_TEST_BAI is not set (./dev test sets it)")
    bai = BackendAI(Path(executable), appliance, tmp_path)
    listed = bai.json("admin", "agent", "list")
    agents = {a["id"]: a for a in listed["items"]}
    assert set(agents) == {appliance.node_id, b.node_id, c.node_id}
    assert agents[c.node_id]["available_slots"]["cuda.device"] == "2"
    assert agents[b.node_id]["occupied_slots"]["cuda.shares"] == "0"


def test_a_node_that_stops_answering_is_lost_and_its_session_says_why(
    cluster: tuple[Appliance, list[NodeServe]],
) -> None:
    appliance, (b, _) = cluster
    created = appliance.cli(
        "session", "create", "-n", "on-b", "-r", "cuda.shares=0.5", "-r", "cpu=0.25"
    )
    assert created.returncode == 0, created.stderr
    assert _session(appliance, "on-b")["status"] == "RUNNING"
    assert _nodes(appliance)[b.node_id]["occupiedSlots"]["cuda.shares"] == "0.5"

    assert b.process is not None
    b.process.send_signal(signal.SIGSTOP)  # frozen: its connection stays open, it says nothing
    wait_for(
        lambda: _nodes(appliance)[b.node_id]["status"] == "LOST",
        "the frozen node to be LOST",
        HEARTBEAT_TIMEOUT + 10,
    )
    node = _nodes(appliance)[b.node_id]
    assert f"no heartbeat for {HEARTBEAT_TIMEOUT:g} s" in node["statusInfo"]
    assert node["occupiedSlots"]["cuda.shares"] == "0"  # released
    session = _session(appliance, "on-b")
    assert session["status"] == "ERROR"
    assert f"node {b.node_id} was lost" in session["statusInfo"]

    b.process.send_signal(signal.SIGCONT)  # it comes back: registers, and its leftover goes
    wait_for(lambda: b.node_id in _alive(appliance), "the node to come back", 30)
    session_id = session["sessionId"]
    wait_for(lambda: not appliance.containers(session_id=session_id) and not _containers_of(b),
             "the lost session's container to be removed", 30)  # fmt: skip


def _containers_of(node: NodeServe) -> list[str]:
    client = docker.from_env()
    try:
        filters = {"label": [f"ai.shipyard.node-id={node.node_id}"]}
        return [c.id for c in client.containers.list(all=True, filters=filters)]
    finally:
        client.close()


def test_a_node_whose_join_token_is_revoked_is_terminated_and_cannot_join(
    cluster: tuple[Appliance, list[NodeServe]],
) -> None:
    appliance, (_, c) = cluster
    tokens = json.loads(appliance.cli("node", "token", "ls", "--json").stdout)["items"]
    (token_id,) = [t["id"] for t in tokens if t["nodeId"] == c.node_id]
    revoked = appliance.cli("node", "token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    wait_for(lambda: "refused" in c.log() or "revoked" in c.log(), "the node to be refused", 30)
    node = _nodes(appliance)[c.node_id]
    assert node["status"] == "TERMINATED"
    assert "join token" in node["statusInfo"] and "revoked" in node["statusInfo"]
    assert c.process is not None and c.process.poll() is None  # it keeps trying, in vain
    assert _nodes(appliance)[c.node_id]["status"] == "TERMINATED"
