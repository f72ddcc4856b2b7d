"""Detection: what this machine is and has, read-only.

`await detect()` (trio) runs every probe at once, each under its own time limit, so a hung NFS
mount or a stuck engine costs a "timed out" finding, not the whole report. Blocking calls run in
worker threads; the parsers live in `_sysinfo` and `_gpu` as pure functions.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from installer import _gpu, _sysinfo
from installer._host import command_environ
from installer._report import Finding, Report, Status

__all__ = ["Finding", "Report", "Status", "detect", "render_table"]

PROBE_TIMEOUT = 5.0
GiB = 2**30
DOCKER_SOCKET = Path("/var/run/docker.sock")

Probe = Callable[[], Awaitable[list[Finding]]]


async def detect(
    *,
    config_dir: Path = Path("/etc/shipyard"),
    unit_dir: Path = Path("/etc/systemd/system"),
    executable: Path = Path("/usr/local/bin/shipyard"),
    sysfs: Path = Path("/sys"),
    time_limit: float = PROBE_TIMEOUT,
) -> Report:
    """Everything the installer needs to know about this machine. Changes nothing."""
    # (section, the finding's name if the probe fails, what it checks, the probe)
    probes: list[tuple[str, str, str, Probe]] = [
        ("system", "os", "system", _system),
        ("system", "virtualization", "virtualization", _virtualization),
        ("engine", "docker", "container engine", _engine),
        ("init", "pid1", "init system", _init),
        (
            "accelerators",
            "nvidia",
            "NVIDIA GPUs",
            lambda: _in_thread(lambda: _gpu.nvidia_findings(sysfs=sysfs)),
        ),
        (
            "accelerators",
            "amd",
            "AMD GPUs",
            lambda: _in_thread(lambda: _gpu.amd_findings(sysfs)),
        ),
        ("storage", "mounts", "storage", _storage),
        ("database", "postgresql", "PostgreSQL", _postgres),
        (
            "installation",
            "shipyard",
            "existing installation",
            lambda: _installation(config_dir, unit_dir, executable),
        ),
    ]
    results: list[list[Finding]] = [[] for _ in probes]

    async def run(index: int, name: str, what: str, probe: Probe) -> None:
        with trio.move_on_after(time_limit) as scope:
            try:
                results[index] = await probe()
            except Exception as exc:  # a probe's bug must not cost the whole report
                results[index] = [
                    Finding(name, None, "warning", f"could not check the {what}: {exc!r}")
                ]
        if scope.cancelled_caught:
            results[index] = [
                Finding(name, None, "warning", f"checking the {what} took over {time_limit:.0f} s")
            ]

    async with trio.open_nursery() as nursery:
        for index, (_, name, what, probe) in enumerate(probes):
            nursery.start_soon(run, index, name, what, probe)
    report = Report()
    for (section, *_), findings in zip(probes, results, strict=True):
        getattr(report, section).extend(findings)
    return report


async def _in_thread(fn: Callable[[], list[Finding]]) -> list[Finding]:
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def _read(path: str | Path, default: str = "") -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return default


async def _run(*argv: str) -> tuple[int, str]:
    """(exit status, stdout+stderr) of a short host command; 127 when it is not installed."""
    if shutil.which(argv[0]) is None:
        return 127, f"{argv[0]}: not found"
    result = await trio.run_process(
        list(argv),
        capture_stdout=True,
        stderr=subprocess.STDOUT,
        check=False,
        stdin=b"",
        env=command_environ(),  # not the packaged executable's library path
    )
    return result.returncode, result.stdout.decode(errors="replace")


# --- system ------------------------------------------------------------------------------


def _system_sync() -> list[Finding]:
    release = _sysinfo.parse_os_release(_read("/etc/os-release"))
    pretty = release.get("PRETTY_NAME") or platform.platform()
    debian = _sysinfo.is_debian_like(release)
    memory = _sysinfo.parse_meminfo(_read("/proc/meminfo")).get("MemTotal", 0)
    cpus = len(os.sched_getaffinity(0))
    uid = os.geteuid()
    listening = _sysinfo.parse_listening(_read("/proc/net/tcp")) + _sysinfo.parse_listening(
        _read("/proc/net/tcp6"), ipv6=True
    )
    memory_status: Status = "error" if memory < 2 * GiB else "warning" if memory < 4 * GiB else "ok"
    return [
        Finding(
            "os",
            {"pretty": pretty, "id": release.get("ID", ""), "debian_like": debian},
            "ok" if debian else "info",
            pretty
            + ("" if debian else " (not Debian/Ubuntu: the installer cannot install an engine)"),
        ),
        Finding("kernel", platform.release(), "info", f"Linux {platform.release()}"),
        Finding("arch", platform.machine(), "ok", f"{platform.machine()} processor"),
        Finding("cpus", cpus, "ok", f"{cpus} CPU(s) available to this process"),
        Finding(
            "memory",
            memory,
            memory_status,
            f"{memory / GiB:.1f} GiB of memory"
            + (
                " (Shipyard needs 2 GiB, 4 GiB to run sessions comfortably)"
                if memory < 4 * GiB
                else ""
            ),
        ),
        Finding(
            "user",
            uid,
            "ok" if uid == 0 else "warning",
            "running as root" if uid == 0 else f"running as uid {uid}: installing needs root",
        ),
        Finding(
            "listening",
            [f"{address}:{port}" for address, port in listening],
            "info",
            f"{len(listening)} TCP port(s) in use here",
        ),
    ]


async def _system() -> list[Finding]:
    return await _in_thread(_system_sync)


async def _virtualization() -> list[Finding]:
    code, output = await _run("systemd-detect-virt")
    if code != 127:
        kind = output.strip() or "none"
        how = "systemd-detect-virt"
    else:
        kind = _sysinfo.guess_virtualization(
            _read("/sys/class/dmi/id/sys_vendor"),
            _read("/sys/class/dmi/id/product_name"),
            _read("/proc/cpuinfo"),
        )
        how = "DMI and the CPU's hypervisor flag"
    detail = "bare metal" if kind == "none" else f"virtualized: {kind}"
    return [Finding("virtualization", kind, "info", f"{detail} (by {how})")]


# --- the container engine --------------------------------------------------------------------


def _engine_sync() -> list[Finding]:
    import docker
    import docker.errors

    installed = shutil.which("dockerd") is not None
    try:
        client = docker.from_env(timeout=PROBE_TIMEOUT - 1)
    except docker.errors.DockerException as exc:
        return _no_engine(installed, str(exc))
    try:
        version = client.version()
        client.ping()
        # "nvidia" among them where the NVIDIA container toolkit is set up (preflight asks)
        runtimes = sorted(client.info().get("Runtimes") or {})
    except (docker.errors.DockerException, OSError) as exc:
        return _no_engine(installed, str(exc))
    finally:
        client.close()
    number = str(version.get("Version", "?"))
    api = str(version.get("ApiVersion", "?"))
    return [
        Finding(
            "docker",
            {"version": number, "api": api, "runtimes": runtimes},
            "ok",
            f"Docker {number} (API {api}) answers on its socket",
        )
    ]


def _no_engine(installed: bool, reason: str) -> list[Finding]:
    if installed:
        detail = (
            f"dockerd is installed but its socket does not answer ({reason}):"
            " start it (systemctl start docker)"
        )
    else:
        detail = (
            "no container engine: install Docker (Debian/Ubuntu: apt-get install docker.io, or"
            " let the installer do it with install_engine = true)"
        )
    return [Finding("docker", {"installed": installed}, "error", detail)]


async def _engine() -> list[Finding]:
    return await _in_thread(_engine_sync)


# --- init ------------------------------------------------------------------------------------


async def _init() -> list[Finding]:
    pid1 = _read("/proc/1/comm").strip() or "unknown"
    if pid1 != "systemd":
        return [
            Finding(
                "pid1",
                pid1,
                "error",
                f"PID 1 is {pid1}, not systemd: the installer runs Shipyard as systemd services"
                " (without systemd, run it in the foreground with `shipyard up`)",
            )
        ]
    code, output = await _run("systemctl", "--version")
    version = output.splitlines()[0] if code == 0 and output else "systemd"
    return [Finding("pid1", pid1, "ok", f"PID 1 is {version}")]


# --- storage ---------------------------------------------------------------------------------


def _space(mount: _sysinfo.Mount) -> _sysinfo.Space | None:
    try:
        stat = os.statvfs(mount.mount_point)
    except OSError:
        return None
    writable = not mount.read_only and os.access(mount.mount_point, os.W_OK)
    return _sysinfo.Space(
        mount, stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize, writable
    )


def _local_spaces() -> tuple[list[_sysinfo.Space], list[_sysinfo.Mount]]:
    """Space on the local filesystems, and the network mounts (left to probe one by one)."""
    mounts = _sysinfo.parse_mountinfo(_read("/proc/self/mountinfo"))
    real = [m for m in mounts if not m.is_pseudo and Path(m.mount_point).is_dir()]
    local = [_space(m) for m in real if not m.is_network]
    return [s for s in local if s is not None], [m for m in real if m.is_network]


async def _storage() -> list[Finding]:
    spaces, network = await trio.to_thread.run_sync(_local_spaces, abandon_on_cancel=True)
    for mount in network:  # a dead server hangs statvfs: one at a time, each with a limit
        with trio.move_on_after(2):
            space = await trio.to_thread.run_sync(_space, mount, abandon_on_cancel=True)
            if space is not None:
                spaces.append(space)
    rows = [
        {
            "mount_point": s.mount.mount_point,
            "fs_type": s.mount.fs_type,
            "source": s.mount.source,
            "total_bytes": s.total_bytes,
            "free_bytes": s.free_bytes,
            "writable": s.writable,
        }
        for s in spaces
    ]
    candidates = _sysinfo.vfolder_candidates(spaces)
    findings = [
        Finding("mounts", rows, "info", f"{len(rows)} mounted filesystem(s) holding data"),
        Finding(
            "vfolder candidates",
            [s.mount.mount_point for s in candidates],
            "ok" if candidates else "warning",
            "; ".join(
                f"{s.mount.mount_point} ({s.mount.fs_type}, {s.free_bytes / GiB:.0f} GiB free)"
                for s in candidates
            )
            or "no writable filesystem found for virtual folders",
        ),
    ]
    state = _sysinfo.mount_for("/var/lib/shipyard", [s.mount for s in spaces])
    holder = next((s for s in spaces if state is not None and s.mount is state), None)
    if holder is not None:
        free = holder.free_bytes
        findings.append(
            Finding(
                "state dir space",
                free,
                "ok" if free >= 10 * GiB else "warning",
                f"{free / GiB:.1f} GiB free for /var/lib/shipyard (on {holder.mount.mount_point})"
                + ("; 10 GiB or more is recommended" if free < 10 * GiB else ""),
            )
        )
    return findings


# --- PostgreSQL ------------------------------------------------------------------------------


async def _postgres() -> list[Finding]:
    listening = False
    with trio.move_on_after(1):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", 5432)
        except OSError:
            pass
        else:
            await stream.aclose()
            listening = True
    clusters: list[dict[str, Any]] = []
    code, output = await _run("pg_lsclusters", "-h")
    if code == 0:
        clusters = [
            {"version": c.version, "name": c.name, "port": c.port, "status": c.status}
            for c in _sysinfo.parse_pg_lsclusters(output)
        ]
    if not listening and not clusters:
        return [
            Finding(
                "postgresql",
                None,
                "info",
                "no PostgreSQL here; the embedded SQLite database needs none",
            )
        ]
    described = ", ".join(
        f"{c['version']}/{c['name']} port {c['port']} {c['status']}" for c in clusters
    )
    detail = "PostgreSQL " + (
        "answers on 127.0.0.1:5432" if listening else "does not answer on 127.0.0.1:5432"
    )
    if described:
        detail += f"; clusters: {described}"
    detail += " (usable with database_url = postgresql+asyncpg://USER:PASSWORD@127.0.0.1/DB)"
    return [Finding("postgresql", {"listening": listening, "clusters": clusters}, "info", detail)]


# --- an existing installation ----------------------------------------------------------------


async def _installation(config_dir: Path, unit_dir: Path, executable: Path) -> list[Finding]:
    from installer.errors import PlanError
    from installer.plan import Plan
    from installer.units import UNIT_NAMES

    findings: list[Finding] = []
    record = config_dir / "install.toml"

    def look() -> tuple[list[str], list[str], bool, str]:
        configs = sorted(p.name for p in config_dir.glob("*") if p.is_file())
        units = [name for name in UNIT_NAMES if (unit_dir / name).exists()]
        return configs, units, executable.exists(), _read(record)

    configs, units, has_executable, record_text = await trio.to_thread.run_sync(look)
    version = None
    if has_executable:
        code, output = await _run(str(executable), "--version")
        version = output.strip().rsplit(" ", 1)[-1] if code == 0 else None
    if not configs and not units and not has_executable:
        return [Finding("shipyard", None, "info", "Shipyard is not installed here")]
    plan: Plan | None = None
    try:
        plan = Plan.from_toml(record_text, source=str(record)) if record_text else None
    except PlanError as exc:
        findings.append(Finding("install record", str(record), "warning", f"unreadable: {exc}"))
    states = {}
    if units and _read("/proc/1/comm").strip() == "systemd":
        for name in units:
            _, output = await _run("systemctl", "is-active", name)
            states[name] = output.strip()
    summary = {
        "config_dir": str(config_dir) if configs else None,
        "configs": configs,
        "units": states or {name: "unknown" for name in units},
        "executable": str(executable) if has_executable else None,
        "version": version,
        "role": plan.role if plan else None,
        "bind_host": plan.bind_host if plan else None,
        "port": plan.port if plan else None,
    }
    parts = []
    if version:
        parts.append(f"{executable} is version {version}")
    elif has_executable:
        parts.append(f"{executable} exists but does not say its version")
    if units:
        parts.append("units " + ", ".join(f"{n} ({states.get(n, 'present')})" for n in units))
    if configs:
        parts.append(f"configuration in {config_dir}")
    findings.insert(
        0,
        Finding(
            "shipyard",
            summary,
            "info",
            "installed: " + "; ".join(parts) + " (installing again upgrades or repairs it)",
        ),
    )
    return findings


# --- the readable table ----------------------------------------------------------------------

_MARK = {"ok": "ok", "warning": "WARN", "error": "ERROR", "info": "-"}


def render_table(report: Report) -> str:
    lines = []
    for section, findings in report.sections().items():
        lines.append(section.upper())
        for f in findings:
            lines.append(f"  {_MARK[f.status]:<6} {f.name:<20} {f.detail}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
