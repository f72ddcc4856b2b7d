"""What this node offers (capacity slots) and how busy the host is (for heartbeats).

Both read /proc directly: cheap enough for every heartbeat, unlike the engine's stats API.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from node.config import NodeConfig
from wire import Slots

_PROC = Path("/proc")


def capacity(config: NodeConfig) -> dict[str, str]:
    """The slots this node offers to sessions, in wire form: {"cpu": "2", "mem": "<bytes>"}."""
    cpu = Decimal(str(config.cpu)) if config.cpu else Decimal(os.cpu_count() or 1)
    if config.mem:
        mem = Slots({"mem": config.mem})["mem"]
    else:
        reserve = Slots({"mem": config.mem_reserve})["mem"]
        mem = max(Decimal(0), Decimal(meminfo()["MemTotal"]) - reserve)
    return Slots({"cpu": cpu, "mem": mem}).to_wire()


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    values = {}
    for line in (_PROC / "meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    fields = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    # user nice system idle iowait irq softirq steal [guest guest_nice — already in user/nice]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]
    total = sum(values)
    return total - idle, total


class HostLoad:
    """CPU use between consecutive samples, and memory in use, of the whole host."""

    def __init__(self) -> None:
        self._last = _cpu_times()

    def sample(self) -> tuple[float, int]:
        """(cpu percent of all cores since the last sample, bytes of memory in use)."""
        busy, total = _cpu_times()
        last_busy, last_total = self._last
        self._last = (busy, total)
        elapsed = total - last_total
        cpu_pct = round(100.0 * (busy - last_busy) / elapsed, 1) if elapsed > 0 else 0.0
        info = meminfo()
        mem_used = info["MemTotal"] - info.get("MemAvailable", info.get("MemFree", 0))
        return cpu_pct, mem_used
