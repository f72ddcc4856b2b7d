"""The systemd units, as typed values rendered by one small writer (no text templates).

Both services are `Type=notify`: systemd counts the control plane as started once it listens and
the node once it has registered with the control plane, and restarts either when it stops
answering its watchdog (`WATCHDOG=1` at half of `WatchdogSec`, see hostlib/sdnotify.py).
`KillMode=mixed` sends SIGTERM to the main process only (the packaged executable's bootloader,
which forwards it once to Python) and SIGKILL to whatever is left after the timeout.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from installer.plan import Plan

CONTROLPLANE_UNIT = "shipyard-controlplane.service"
NODE_UNIT = "shipyard-node.service"
UNIT_NAMES = (CONTROLPLANE_UNIT, NODE_UNIT)
WATCHDOG_SEC = 30

Section = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class UnitFile:
    name: str
    sections: tuple[Section, ...]

    def render(self) -> str:
        blocks = []
        for title, entries in self.sections:
            lines = [f"[{title}]"]
            for key, value in entries:
                if "\n" in value:
                    raise ValueError(f"{self.name}: {key} must be one line")
                lines.append(f"{key}={value}")
            blocks.append("\n".join(lines))
        header = "# Written by `shipyard install`; it rewrites this file when run again.\n"
        return header + "\n\n".join(blocks) + "\n"


def exec_quote(arg: str) -> str:
    """One word of an Exec*= command line (systemd.service(5) quoting, specifiers escaped)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not re.search(r"[\s\"'\\;]", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _command(*argv: str) -> str:
    return " ".join(exec_quote(a) for a in argv)


def _service(description: str, argv: Sequence[str], identifier: str) -> Section:
    return (
        "Service",
        (
            ("Type", "notify"),
            ("NotifyAccess", "main"),
            ("ExecStart", _command(*argv)),
            ("Restart", "on-failure"),
            ("RestartSec", "2"),
            ("WatchdogSec", str(WATCHDOG_SEC)),
            ("TimeoutStartSec", "90"),
            ("TimeoutStopSec", "30"),
            ("KillMode", "mixed"),
            ("Environment", "PYTHONUNBUFFERED=1"),
            ("StandardOutput", "journal"),
            ("StandardError", "journal"),
            ("SyslogIdentifier", identifier),
        ),
    )


_INSTALL: Section = ("Install", (("WantedBy", "multi-user.target"),))


def controlplane_unit(plan: Plan) -> UnitFile:
    config = plan.config_dir / "controlplane.toml"
    return UnitFile(
        CONTROLPLANE_UNIT,
        (
            (
                "Unit",
                (
                    ("Description", "Shipyard control plane (API, scheduler, database)"),
                    ("After", "network.target"),
                ),
            ),
            _service(
                "control plane",
                [str(plan.executable), "controlplane", "serve", "--config", str(config)],
                "shipyard-controlplane",
            ),
            _INSTALL,
        ),
    )


def node_unit(plan: Plan) -> UnitFile:
    after = ["network-online.target", "docker.service"]
    if plan.role == "all-in-one":
        after.append(CONTROLPLANE_UNIT)
    config = plan.config_dir / "node.toml"
    return UnitFile(
        NODE_UNIT,
        (
            (
                "Unit",
                (
                    ("Description", "Shipyard node agent (runs session containers)"),
                    ("After", " ".join(after)),
                    ("Wants", " ".join(after)),
                ),
            ),
            _service(
                "node",
                [str(plan.executable), "node", "serve", "--config", str(config)],
                "shipyard-node",
            ),
            _INSTALL,
        ),
    )


def units_for(plan: Plan) -> list[UnitFile]:
    if plan.role == "node":
        return [node_unit(plan)]
    return [controlplane_unit(plan), node_unit(plan)]


def verify(paths: Sequence[Path], timeout: float = 30.0) -> str:
    """What `systemd-analyze verify` says about the unit files; "" when it has no complaint.

    It exits 0 even for an unknown key (it only warns), so the output is the verdict."""
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = (result.stdout + result.stderr).strip()
    if result.returncode and not out:
        out = f"systemd-analyze verify exited with {result.returncode}"
    return out
