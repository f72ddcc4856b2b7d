"""Live statistics of the node and its kernels, read from cgroup and /proc files and from the
accelerator plugins' open driver handles: cheap enough to sample every few seconds, unlike the
engine's stats API.

A kernel's cgroup is found from its container's init process (/proc/PID/cgroup), so the engine's
cgroup driver (cgroupfs or systemd) does not matter; cgroup v1 (one hierarchy per controller)
and v2 (one unified hierarchy) are both read. Rates (cpu %) come from the difference to the
previous sample of the same kernel: a kernel's first sample reads 0 %.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.accelerators import Accelerators, DeviceSample
from node.resources import HostLoad, meminfo

_UNLIMITED = 2**62  # cgroup v1 writes "no limit" as a huge page-aligned number


@dataclass(frozen=True)
class Tracked:
    """What the sampler needs to know about one running kernel."""

    kernel_id: str
    pid: int  # the container's init process, as the host sees it
    devices: Mapping[str, Sequence[str]]  # plugin -> device ids it holds


@dataclass(frozen=True)
class KernelStat:
    kernel_id: str
    cpu_pct: float  # of one core: a busy single-threaded loop reads about 100
    cpu_used_ms: int  # total since the container started
    mem_used: int  # bytes, without the page cache the kernel can drop
    mem_limit: int | None
    io_read: int  # bytes, since the container started
    io_write: int
    net_rx: int  # bytes, all interfaces but loopback
    net_tx: int
    devices: list[DeviceSample]  # the devices the kernel holds


@dataclass(frozen=True)
class NodeStat:
    cpu_pct: float  # of all cores together (100 = every core busy)
    mem_used: int
    mem_total: int
    devices: list[DeviceSample]


@dataclass(frozen=True)
class StatsSample:
    at: float  # time.time()
    node: NodeStat
    kernels: dict[str, KernelStat]


def cgroup_paths(pid: int, proc: Path = Path("/proc")) -> dict[str, str]:
    """Controller -> path from /proc/PID/cgroup; v2's unified path is under the key ""."""
    paths = {}
    for line in (proc / str(pid) / "cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller.removeprefix("name=")] = path
    return paths


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None  # "max"


def _keyed(text: str | None) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat)."""
    values = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


@dataclass(frozen=True)
class _Raw:
    cpu_ns: int
    mem_used: int
    mem_limit: int | None
    io_read: int
    io_write: int


def read_cgroup(paths: Mapping[str, str], root: Path) -> _Raw:
    """A container's counters from its cgroup files under `root` (normally /sys/fs/cgroup)."""
    if (root / "cpuacct").is_dir() and "cpuacct" in paths:  # v1
        cpu_ns = _int(root / "cpuacct" / paths["cpuacct"].lstrip("/") / "cpuacct.usage") or 0
        mem = root / "memory" / paths.get("memory", "").lstrip("/")
        usage = _int(mem / "memory.usage_in_bytes") or 0
        inactive = _keyed(_read(mem / "memory.stat")).get("total_inactive_file", 0)
        limit = _int(mem / "memory.limit_in_bytes")
        blkio = root / "blkio" / paths.get("blkio", "").lstrip("/")
        io_read = io_write = 0
        for line in (_read(blkio / "blkio.throttle.io_service_bytes") or "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "Read":
                io_read += int(parts[2])
            elif len(parts) == 3 and parts[1] == "Write":
                io_write += int(parts[2])
        if limit is not None and limit >= _UNLIMITED:
            limit = None
        return _Raw(cpu_ns, max(0, usage - inactive), limit, io_read, io_write)
    group = root / paths.get("", "").lstrip("/")  # v2
    cpu_ns = _keyed(_read(group / "cpu.stat")).get("usage_usec", 0) * 1000
    usage = _int(group / "memory.current") or 0
    inactive = _keyed(_read(group / "memory.stat")).get("inactive_file", 0)
    io_read = io_write = 0
    for line in (_read(group / "io.stat") or "").splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                io_read += int(value)
            elif key == "wbytes":
                io_write += int(value)
    limit = _int(group / "memory.max")
    return _Raw(cpu_ns, max(0, usage - inactive), limit, io_read, io_write)


def read_net(pid: int, proc: Path = Path("/proc")) -> tuple[int, int]:
    """(received, sent) bytes of the process's network namespace, loopback left out."""
    rx = tx = 0
    for line in (_read(proc / str(pid) / "net/dev") or "").splitlines()[2:]:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() != "lo" and len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


class Sampler:
    """Samples the node and the kernels it is given; keeps each kernel's previous cpu counter."""

    def __init__(
        self,
        accelerators: Accelerators,
        *,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        proc: Path = Path("/proc"),
    ) -> None:
        self._accelerators = accelerators
        self._root = cgroup_root
        self._proc = proc
        self._host = HostLoad()
        self._last_cpu: dict[str, tuple[float, int]] = {}  # kernel -> (monotonic s, cpu ns)

    def sample(self, kernels: Sequence[Tracked]) -> StatsSample:
        """Blocking file reads (a few per kernel): call it in a worker thread."""
        devices = self._accelerators.sample()
        by_device = {(d.plugin, d.device_id): d for d in devices}
        stats = {}
        for kernel in kernels:
            try:
                stats[kernel.kernel_id] = self._kernel(kernel, by_device)
            except (OSError, ValueError):
                continue  # the container stopped meanwhile: its process and cgroup are gone
        self._last_cpu = {k: v for k, v in self._last_cpu.items() if k in stats}
        cpu_pct, mem_used = self._host.sample()
        node = NodeStat(cpu_pct, mem_used, meminfo()["MemTotal"], devices)
        return StatsSample(time.time(), node, stats)

    def _kernel(
        self, kernel: Tracked, by_device: Mapping[tuple[str, str], DeviceSample]
    ) -> KernelStat:
        raw = read_cgroup(cgroup_paths(kernel.pid, self._proc), self._root)
        now = time.monotonic()
        last = self._last_cpu.get(kernel.kernel_id)
        self._last_cpu[kernel.kernel_id] = (now, raw.cpu_ns)
        cpu_pct = 0.0
        if last is not None and now > last[0]:
            cpu_pct = round(100 * (raw.cpu_ns - last[1]) / ((now - last[0]) * 1e9), 1)
        rx, tx = read_net(kernel.pid, self._proc)
        held = [
            by_device[(plugin, device)]
            for plugin, ids in kernel.devices.items()
            for device in ids
            if (plugin, device) in by_device
        ]
        return KernelStat(
            kernel.kernel_id, max(0.0, cpu_pct), raw.cpu_ns // 1_000_000, raw.mem_used,
            raw.mem_limit, raw.io_read, raw.io_write, rx, tx, held,
        )  # fmt: skip
