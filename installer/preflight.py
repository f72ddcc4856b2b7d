"""Preflight: what in the detection report stands in the way of a plan, and how to fix it.

A pure function of the report and the plan; errors stop the install before it changes anything,
warnings are shown and the install goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from installer import _sysinfo
from installer._report import Finding, Report
from installer.plan import Plan

GiB = 2**30
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    severity: Severity
    message: str
    fix: str


def preflight(report: Report, plan: Plan | None) -> list[Problem]:
    """Problems for installing `plan` on the machine `report` describes (for `None`: the
    machine's own problems, before a plan exists). Errors first."""
    problems = [
        *_root(report),
        *_memory(report),
        *_systemd(report),
        *_engine(report, plan),
        *_gpus(report, plan),
    ]
    if plan is not None:
        problems += _disk(report, plan)
        problems += _port(report, plan)
    return sorted(problems, key=lambda p: p.severity != "error")


def _root(report: Report) -> list[Problem]:
    uid = report.value("system", "user")
    if uid is None or uid == 0:
        return []
    return [
        Problem(
            "error",
            f"the installer runs as uid {uid}, not root: it writes to /etc, /usr/local/bin and"
            " systemd's unit directory",
            "run it as root: sudo shipyard install ...",
        )
    ]


def _memory(report: Report) -> list[Problem]:
    memory = report.value("system", "memory")
    if not isinstance(memory, int) or memory <= 0:
        return []
    if memory < 2 * GiB:
        return [
            Problem(
                "error",
                f"this machine has {memory / GiB:.1f} GiB of memory; Shipyard needs at least 2 GiB",
                "install on a machine (or VM) with at least 2 GiB, better 4 GiB or more",
            )
        ]
    if memory < 4 * GiB:
        return [
            Problem(
                "warning",
                f"this machine has {memory / GiB:.1f} GiB of memory; sessions get what is left"
                " after the services (about 1 GiB)",
                "4 GiB or more is recommended",
            )
        ]
    return []


def _systemd(report: Report) -> list[Problem]:
    pid1 = report.value("init", "pid1")
    if pid1 is None or pid1 == "systemd":
        return []
    return [
        Problem(
            "error",
            f"PID 1 is {pid1}, not systemd: the installer runs Shipyard as systemd services",
            "install on a host booted with systemd, or run Shipyard in the foreground with"
            " `shipyard up`",
        )
    ]


def _engine(report: Report, plan: Plan | None) -> list[Problem]:
    finding = report.get("engine", "docker")
    if finding is None or finding.status == "ok":
        return []
    installs = plan is not None and plan.install_engine
    os_info: dict[str, Any] = report.value("system", "os") or {}
    if installs:
        if os_info and not os_info.get("debian_like", False):
            return [
                Problem(
                    "error",
                    f"install_engine installs Docker with apt-get, but this is"
                    f" {os_info.get('pretty', 'not Debian or Ubuntu')}",
                    "install a container engine (Docker) yourself, then run the installer with"
                    " install_engine = false",
                )
            ]
        return []
    installed = isinstance(finding.value, dict) and finding.value.get("installed")
    if installed:
        return [
            Problem(
                "error",
                "Docker is installed but its engine does not answer",
                "start it (systemctl enable --now docker), or set install_engine = true",
            )
        ]
    return [
        Problem(
            "error",
            "no container engine answers on this machine",
            "set install_engine = true in the answers (Debian/Ubuntu), or install Docker"
            " (apt-get install docker.io)",
        )
    ]


def detected_gpus(report: Report) -> dict[str, Finding]:
    """The GPUs detection found, by id (what node.toml `gpus` lists)."""
    found = {}
    for finding in report.sections()["accelerators"]:
        value = finding.value
        if finding.name.startswith(("nvidia gpu ", "amd gpu ")) and isinstance(value, dict):
            ident = value.get("uuid") or value.get("id")
            if isinstance(ident, str):
                found[ident] = finding
    return found


def _gpus(report: Report, plan: Plan | None) -> list[Problem]:
    found = detected_gpus(report)
    chosen = None if plan is None else plan.gpus
    # a GPU without its driver (detection says what to install)
    problems = [
        Problem("warning", f.detail, "install the driver, or go on without that GPU")
        for f in report.sections()["accelerators"]
        if f.status == "warning"
    ]
    unknown = sorted(set(chosen or ()) - set(found))
    if unknown:
        problems.append(
            Problem(
                "warning",
                f"gpus lists {', '.join(unknown)}, which detection did not find on this machine",
                f"list only ids detection shows ({', '.join(sorted(found)) or 'none'}),"
                " or leave gpus unset to offer every GPU",
            )
        )
    nvidia = [g for g, finding in found.items() if finding.name.startswith("nvidia")]
    nvidia = [g for g in nvidia if chosen is None or g in chosen]
    engine: dict[str, Any] = report.value("engine", "docker") or {}
    runtimes = engine.get("runtimes")
    if nvidia and isinstance(runtimes, list) and "nvidia" not in runtimes:
        problems.append(
            Problem(
                "warning",
                f"{len(nvidia)} NVIDIA GPU(s) found, but the container engine has no nvidia"
                " runtime (the NVIDIA container toolkit): sessions cannot use them",
                "install nvidia-container-toolkit, run `nvidia-ctk runtime configure"
                " --runtime=docker` and restart Docker (or set nvidia_cdi = true in node.toml"
                " with CDI specs from `nvidia-ctk cdi generate`)",
            )
        )
    return problems


def _disk(report: Report, plan: Plan) -> list[Problem]:
    rows = report.value("storage", "mounts") or []
    mounts = [_sysinfo.Mount(r["mount_point"], r["fs_type"], r.get("source", ""), ()) for r in rows]
    holder = _sysinfo.mount_for(str(plan.state_dir), mounts)
    if holder is None:
        return []
    row = next(r for r in rows if r["mount_point"] == holder.mount_point)
    free = int(row.get("free_bytes", 0))
    if free >= 10 * GiB:
        return []
    return [
        Problem(
            "warning",
            f"{free / GiB:.1f} GiB free for {plan.state_dir} (on {holder.mount_point});"
            " images' scratch space and the database live there",
            "free space, or choose a state_dir on a larger filesystem (10 GiB or more)",
        )
    ]


def _port(report: Report, plan: Plan) -> list[Problem]:
    if plan.role != "all-in-one":
        return []
    listening = [_split(text) for text in report.value("system", "listening") or []]
    if not _sysinfo.port_taken(listening, plan.bind_host, plan.port):
        return []
    existing: dict[str, Any] = report.value("installation", "shipyard") or {}
    if existing.get("port") == plan.port and existing.get("role") == "all-in-one":
        return []  # our own control plane, which this install upgrades or repairs
    return [
        Problem(
            "error",
            f"port {plan.port} on {plan.bind_host} is already in use",
            f"stop what listens there (ss -ltnp 'sport = :{plan.port}') or choose another port",
        )
    ]


def _split(text: str) -> tuple[str, int]:
    address, _, port = text.rpartition(":")
    return address, int(port)
