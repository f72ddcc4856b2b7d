"""Live statistics as Backend.AI shows them: `{METRIC: {"current", "capacity", "pct",
"unit_hint"}}` with string values (docs/backendai-api.md §14.5).

The node sends raw numbers with each heartbeat (wire.KernelStats); the latest sample is kept in
the kernel's record, and stays there when the kernel ends (its `last_stat`). Counters (cpu_used,
io, net) are totals since the container started, so their unit hint says bytes, not a rate.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import wire

# the slot prefix a plugin's devices are known by in Backend.AI's metric names (mock: cuda.*)
_METRIC_PREFIX = {"nvidia": "cuda", "amd": "rocm", "mock": "cuda"}


def _metric(current: float | int, capacity: float | int | None, unit_hint: str) -> dict[str, str]:
    metric = {"current": _num(current), "unit_hint": unit_hint}
    if capacity:
        metric["capacity"] = _num(capacity)
        metric["pct"] = f"{100 * Decimal(str(current)) / Decimal(str(capacity)):.2f}"
    return metric


def _num(value: float | int) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def kernel_live_stat(stats: wire.KernelStats, requested: wire.Slots) -> dict[str, Any]:
    """One kernel's sample; cpu_util is in percent of one core, its capacity what it may use
    (cpu=2: 200)."""
    cpu_capacity = float(requested["cpu"] * 100) if requested["cpu"] else None
    live: dict[str, Any] = {
        "cpu_util": _metric(stats.cpu_pct, cpu_capacity, "percent"),
        "cpu_used": _metric(stats.cpu_used_ms, None, "msec"),
        "mem": _metric(stats.mem_used, stats.mem_limit, "bytes"),
        "io_read": _metric(stats.io_read, None, "bytes"),
        "io_write": _metric(stats.io_write, None, "bytes"),
        "net_rx": _metric(stats.net_rx, None, "bytes"),
        "net_tx": _metric(stats.net_tx, None, "bytes"),
    }
    live.update(device_metrics(stats.devices))
    return live


def utilization(stats: wire.KernelStats, requested: wire.Slots) -> tuple[float, float | None]:
    """What the idle checks sample (controlplane/activity.py): cpu use in percent of the cpus
    the session holds (cpu=2 busy on one core: 50), and the mean use of its GPUs (None when it
    holds none, or the driver does not say)."""
    cpus = float(requested["cpu"]) or 1.0
    utils = [d.util_pct for d in stats.devices if d.util_pct is not None]
    return stats.cpu_pct / cpus, (sum(utils) / len(utils) if utils else None)


def device_metrics(devices: list[wire.DeviceStats]) -> dict[str, Any]:
    """`cuda_util` (the mean over the devices) and `cuda_mem` (their sum), one pair per plugin."""
    by_plugin: dict[str, list[wire.DeviceStats]] = {}
    for device in devices:
        by_plugin.setdefault(device.plugin, []).append(device)
    metrics: dict[str, Any] = {}
    for plugin, held in sorted(by_plugin.items()):
        prefix = _METRIC_PREFIX.get(plugin, plugin)
        utils = [d.util_pct for d in held if d.util_pct is not None]
        if utils:
            metrics[f"{prefix}_util"] = _metric(sum(utils) / len(utils), 100, "percent")
        used, total = sum(d.mem_used for d in held), sum(d.mem_total for d in held)
        metrics[f"{prefix}_mem"] = _metric(used, total, "bytes")
    return metrics


def node_live_stat(message: wire.Heartbeat) -> dict[str, Any]:
    """The node's own sample, with each device's figures by id."""
    return {
        "cpu_util": _metric(message.cpu_pct, 100, "percent"),
        "mem": _metric(message.mem_used_bytes, message.mem_total_bytes or None, "bytes"),
        "devices": {f"{d.plugin}:{d.device_id}": device_metrics([d]) for d in message.devices},
    }
