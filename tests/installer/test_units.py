"""The systemd units: what they say, and `systemd-analyze verify` has nothing to add."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from installer import units
from installer.plan import Plan


def _verify_here(tmp_path: Path, files: list[units.UnitFile]) -> str:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (./dev test does)")
    paths = []
    for unit in files:
        path = tmp_path / unit.name
        path.write_text(unit.render())
        paths.append(path)
    return units.verify(paths)


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    """An executable for ExecStart= to point at (verify checks that it exists)."""
    exe = tmp_path / "bin" / "shipyard"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def test_all_in_one_units(stub: Path) -> None:
    plan = Plan(role="all-in-one", executable=stub, config_dir=Path("/etc/shipyard"))
    cp, node = units.units_for(plan)
    text = cp.render()
    for line in (
        "Type=notify",
        "NotifyAccess=all",  # unprivileged: Python speaks for itself (test_sandbox_settings)
        "WatchdogSec=30",
        "Restart=on-failure",
        "StandardOutput=journal",
        f"ExecStart={stub} controlplane serve --config /etc/shipyard/controlplane.toml",
        "WantedBy=multi-user.target",
    ):
        assert f"\n{line}\n" in text, line
    node_text = node.render()
    after = "network-online.target docker.service shipyard-controlplane.service"
    assert f"\nAfter={after}\n" in node_text
    assert f"\nWants={after}\n" in node_text
    assert f"ExecStart={stub} node serve --config /etc/shipyard/node.toml" in node_text


def test_sandbox_settings(stub: Path) -> None:
    """The control plane as its own user, with only the file capabilities the folders need,
    writing only its state and the folders, not reaching Docker; the node with the
    capabilities it uses and no mount namespace (dockerd sees its mounts)."""
    plan = Plan(
        role="all-in-one",
        executable=stub,
        state_dir=Path("/var/lib/sy"),
        vfolder_root=Path("/srv/folders"),
    )
    cp, node = (u.render() for u in units.units_for(plan))
    for line in (
        "User=shipyard",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/sy",
        "ReadWritePaths=-/srv/folders",
        "InaccessiblePaths=-/var/lib/sy/node",
        "InaccessiblePaths=-/run/docker.sock",
        "CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER",
        "AmbientCapabilities=CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER",
        "SystemCallFilter=@chown",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "PrivateTmp=yes",
        "ProtectHome=yes",
    ):
        assert f"\n{line}\n" in cp, line
    assert "PrivateUsers" not in cp  # the capabilities must reach files of the kernel uid
    assert "\nUser=" not in node and "NotifyAccess=main" in node
    for mounting in ("ProtectSystem", "PrivateTmp", "ReadWritePaths", "PrivateDevices"):
        assert f"\n{mounting}=" not in node, mounting
    assert "CAP_SYS_ADMIN" in node and "NoNewPrivileges=yes" in node


def test_a_joining_node_needs_no_local_control_plane(stub: Path) -> None:
    plan = Plan(role="node", executable=stub, controlplane_url="http://cp:8081", join_token="syj_x")
    (node,) = units.units_for(plan)
    assert "shipyard-controlplane" not in node.render()
    assert "\nAfter=network-online.target docker.service\n" in node.render()


@pytest.mark.parametrize("role", ["all-in-one", "node"])
def test_systemd_analyze_verify_says_nothing(tmp_path: Path, stub: Path, role: str) -> None:
    extra = {"controlplane_url": "http://cp:8081", "join_token": "syj_x"} if role == "node" else {}
    plan = Plan(role=role, executable=stub, **extra)  # type: ignore[arg-type]
    assert _verify_here(tmp_path, units.units_for(plan)) == ""


def test_verify_is_heard_when_it_complains(tmp_path: Path, stub: Path) -> None:
    # the check above would pass vacuously if verify's warnings were lost: show they are not
    plan = Plan(role="all-in-one", executable=stub)
    good = units.controlplane_unit(plan)
    title, entries = good.sections[1]
    bad = units.UnitFile(good.name, (good.sections[0], (title, (*entries, ("Bogus", "1")))))
    assert "Unknown key 'Bogus'" in _verify_here(tmp_path, [bad])


def test_exec_quoting() -> None:
    assert units.exec_quote("/usr/local/bin/shipyard") == "/usr/local/bin/shipyard"
    assert units.exec_quote("/opt/my apps/shipyard") == '"/opt/my apps/shipyard"'
    assert units.exec_quote("50%") == "50%%"
    assert units.exec_quote("$HOME") == "$$HOME"
    assert units.exec_quote('say "hi"') == '"say \\"hi\\""'
