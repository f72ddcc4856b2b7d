"""Joining a node to a running control plane with a join token: `shipyard node token create`
against a real appliance, a real node agent dialling in with the token, and the installer's
node role (systemd played by FakeSystemdHost; real systemd is in test_systemd_e2e.py)."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import trio

from client.config import ClientConfig
from client.sdk import Client
from installer import engine
from installer.engine import Event, StepFailed
from installer.plan import Plan
from installer.testing import FakeSystemdHost
from node.config import NodeConfig
from node.testing import NodeProcess
from shipyard.testing import Appliance, running_appliance

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def appliance() -> Iterator[Appliance]:
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine here: {exc}")
    with running_appliance() as appliance:
        yield appliance


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sy-join-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def new_token(appliance: Appliance) -> str:
    result = appliance.cli("node", "token", "create", "--ttl", "1h", "--json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["token"])


def test_token_create_says_how_to_join(appliance: Appliance) -> None:
    result = appliance.cli("node", "token", "create", "--ttl", "2h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("token:   syj_")
    assert 'role = "node"' in result.stdout
    assert f'controlplane_url = "{appliance.endpoint}"' in result.stdout
    assert "loopback" in result.stdout  # the appliance listens on 127.0.0.1 only


def test_token_ls_and_revoke(appliance: Appliance) -> None:
    new_token(appliance)
    listed = appliance.cli("node", "token", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    unused = [t for t in json.loads(listed.stdout)["items"] if not t["nodeId"]]
    token_id = unused[-1]["id"]
    table = appliance.cli("node", "token", "ls")
    assert f"\n{token_id}" in table.stdout and "unused, expires" in table.stdout
    revoked = appliance.cli("node", "token", "revoke", token_id)
    assert (revoked.returncode, revoked.stdout) == (0, f"revoked {token_id}\n")
    again = appliance.cli("node", "token", "ls")
    assert any(
        line.startswith(token_id) and "revoked" in line for line in again.stdout.splitlines()
    )
    missing = appliance.cli("node", "token", "revoke", "nosuchtoken")
    assert missing.returncode == 1 and "no join token nosuchtoken" in missing.stderr


@pytest.mark.trio
async def test_a_node_joins_with_a_token(
    appliance: Appliance, root: Path, nursery: trio.Nursery
) -> None:
    token = new_token(appliance)
    node_id = f"i-test-join-{uuid.uuid4().hex[:8]}"
    config = NodeConfig(
        state_dir=root / "node",
        controlplane_url=appliance.endpoint,
        node_token=token,
        node_id=node_id,
    )
    node = NodeProcess(nursery, config)
    await node.start()
    try:
        async with Client(ClientConfig.from_env(appliance.env())) as api:
            with trio.fail_after(30):
                while True:
                    nodes = (await api.request("GET", "/nodes"))["items"]
                    mine = [n for n in nodes if n["id"] == node_id]
                    if mine and mine[0]["status"] == "ALIVE":
                        break
                    await trio.sleep(0.1)
    finally:
        await node.stop()


def node_plan(root: Path, appliance: Appliance, token: str) -> Plan:
    return Plan(
        role="node",
        controlplane_url=appliance.endpoint,
        join_token=token,
        node_id=f"i-test-role-{uuid.uuid4().hex[:8]}",
        executable=root / "bin" / "shipyard",
        state_dir=root / "state",
        vfolder_root=root / "state" / "vfolders",
        config_dir=root / "etc",
        unit_dir=root / "units",
    )


@pytest.mark.trio
async def test_the_node_role_installs_only_the_node(appliance: Appliance, root: Path) -> None:
    plan = node_plan(root, appliance, new_token(appliance))
    host = FakeSystemdHost(plan.unit_dir)
    events: list[Event] = []
    outcome = await engine.install(plan, events.append, host=host, check_first=False)
    assert outcome.ok, outcome
    assert sorted(p.name for p in plan.unit_dir.iterdir()) == ["shipyard-node.service"]
    assert sorted(p.name for p in plan.config_dir.iterdir()) == ["install.toml", "node.toml"]
    node_toml = (plan.config_dir / "node.toml").read_text()
    assert f'node_token = "{plan.join_token}"' in node_toml
    assert f'controlplane_url = "{appliance.endpoint}"' in node_toml
    assert Plan.load(plan.config_dir / "install.toml") == plan  # what uninstall reads
    assert host.units["shipyard-node.service"].active
    assert "shipyard-controlplane.service" not in host.units
    assert outcome.summary["endpoint"] == appliance.endpoint


@pytest.mark.trio
async def test_a_bad_join_token_stops_before_anything_changes(
    appliance: Appliance, root: Path
) -> None:
    plan = node_plan(root, appliance, "syj_not-a-real-token")
    events: list[Event] = []
    outcome = await engine.install(
        plan, events.append, host=FakeSystemdHost(plan.unit_dir), check_first=False
    )
    assert not outcome.ok
    (failed,) = [e for e in events if isinstance(e, StepFailed)]
    assert failed.step == "join-check"
    assert "HTTP 401" in failed.error and "check join_token" in failed.error
    assert "shipyard node token create" in failed.fix
    assert list(await trio.Path(root).iterdir()) == []
