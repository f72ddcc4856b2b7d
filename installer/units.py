"""The systemd units, as typed values rendered by one small writer (no text templates).

Both services are `Type=notify`: systemd counts the control plane as started once it listens and
the node once it has registered with the control plane, and restarts either when it stops
answering its watchdog (`WATCHDOG=1` at half of `WatchdogSec`, see hostlib/sdnotify.py).
`KillMode=mixed` sends SIGTERM to the main process only (Python: the installed executable is
laid out unpacked, installer/_layout.py; a one-file program's bootloader would forward it once)
and SIGKILL to whatever is left after the timeout.

The control plane runs as its own system user (`plan.service_user`) in a tight sandbox
(`CONTROLPLANE_SANDBOX`; `systemd-analyze security` rates it "OK"), writing only its state
directory and the virtual folders, with the three file capabilities those need
(`FOLDER_CAPABILITIES`). The node drives Docker and loop-mounts each kernel's work filesystem, so it
stays root, and its mounts must be seen by dockerd: nothing that gives it a mount namespace of
its own (ProtectSystem, PrivateTmp, ReadWritePaths, ...) or a device policy (PrivateDevices,
DeviceAllow: the loop devices) applies; it gets the sandboxing that works without those
(`NODE_SANDBOX`) and only the capabilities it uses.
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


def _service(
    description: str,
    argv: Sequence[str],
    identifier: str,
    extra: Sequence[tuple[str, str]] = (),
    notify_access: str = "main",
) -> Section:
    return (
        "Service",
        (
            ("Type", "notify"),
            ("NotifyAccess", notify_access),
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
            *extra,
        ),
    )


_INSTALL: Section = ("Install", (("WantedBy", "multi-user.target"),))

# what no Shipyard service needs, whatever its privileges (seccomp and personality only)
_COMMON_SANDBOX: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "yes"),
    ("LockPersonality", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("SystemCallArchitectures", "native"),
    ("KeyringMode", "private"),
)

FOLDER_CAPABILITIES = "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER"
# what the DAC override would otherwise open to it: Docker's socket (root's own, root's power)
# and the password hashes
ROOT_ONLY = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd",
    "/etc/shadow",
    "/etc/gshadow",
)

CONTROLPLANE_SANDBOX: tuple[tuple[str, str], ...] = (
    *_COMMON_SANDBOX,
    ("UMask", "0077"),
    # the virtual folders belong to the sessions' user (kernel_uid): the API writes there as
    # root would, and hands what it writes to that user (docs/architecture.md "Virtual
    # folders"); ProtectSystem=strict keeps every write inside ReadWritePaths. No PrivateUsers:
    # in a user namespace of its own these would not reach files of an unmapped uid.
    ("CapabilityBoundingSet", FOLDER_CAPABILITIES),
    ("AmbientCapabilities", FOLDER_CAPABILITIES),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateMounts", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("RestrictNamespaces", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("MemoryDenyWriteExecute", "yes"),
    ("RemoveIPC", "yes"),
    ("DevicePolicy", "closed"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @resources"),
    ("SystemCallFilter", "@chown"),
    ("SystemCallErrorNumber", "EPERM"),
)

NODE_SANDBOX: tuple[tuple[str, str], ...] = (
    *_COMMON_SANDBOX,
    # Docker's socket (root's), the kernel directories (chown to the kernel uid, DAC on them),
    # loop-mounting work filesystems (CAP_SYS_ADMIN), stopping its children
    (
        "CapabilityBoundingSet",
        "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_KILL CAP_SYS_ADMIN"
        " CAP_MKNOD",
    ),
    ("ProtectHostname", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
    ("SystemCallFilter", "@system-service @mount"),
    ("SystemCallErrorNumber", "EPERM"),
)


def controlplane_unit(plan: Plan) -> UnitFile:
    config = plan.config_dir / "controlplane.toml"
    extra: list[tuple[str, str]] = []
    if plan.service_user:
        extra += [("User", plan.service_user), ("Group", plan.service_user)]
    extra += [*CONTROLPLANE_SANDBOX, ("ReadWritePaths", str(plan.state_dir))]
    if not plan.vfolder_root.is_relative_to(plan.state_dir):
        extra.append(("ReadWritePaths", f"-{plan.vfolder_root}"))
    # the node's state is not the control plane's business; mounted over, it cannot be renamed
    # away either
    hidden = (plan.state_dir / "node", *ROOT_ONLY)
    extra += [("InaccessiblePaths", f"-{path}") for path in hidden]
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
                extra,
                # unprivileged, the packaged executable's Python (the bootloader's child) cannot
                # speak as its parent (shipyard/sdnotify.py); the sandboxed cgroup holds only it
                notify_access="all" if plan.service_user else "main",
            ),
            _INSTALL,
        ),
    )


def node_unit(plan: Plan) -> UnitFile:
    after = ["network-online.target", "docker.service"]
    if plan.role == "all-in-one":
        after.append(CONTROLPLANE_UNIT)
    config = plan.config_dir / "node.toml"
    extra = list(NODE_SANDBOX)
    trusted = plan.trusted_certificate
    if trusted is not None:  # the control plane's self-signed certificate
        extra.append(("Environment", f"SSL_CERT_FILE={trusted}"))
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
                extra,
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
