"""The statistics sampler on a cgroup v2 host (the test machine runs v1, which the Docker test in
test_devices.py covers): the unified hierarchy's files as the kernel writes them."""

from __future__ import annotations

from pathlib import Path

from node.accelerators import Accelerators
from node.stats import Sampler, Tracked, cgroup_paths

NET_DEV = """Inter-|   Receive                            |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs
    lo:   5000      10    0    0    0     0          0         0     5000      10    0
  eth0:   1200       4    0    0    0     0          0         0      800       3    0
"""


def _fake_host(tmp_path: Path, usage_usec: int) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "4242/net").mkdir(parents=True, exist_ok=True)
    (proc / "4242/cgroup").write_text("0::/system.slice/docker-abc.scope\n")
    (proc / "4242/net/dev").write_text(NET_DEV)
    group = root / "system.slice/docker-abc.scope"
    group.mkdir(parents=True, exist_ok=True)
    (group / "cpu.stat").write_text(f"usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 1\n")
    (group / "memory.current").write_text(f"{300 * 2**20}\n")
    (group / "memory.stat").write_text(f"anon 1\ninactive_file {100 * 2**20}\n")
    (group / "memory.max").write_text("max\n")
    (group / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n")
    return proc, root


def test_cgroup_v2_counters(tmp_path: Path) -> None:
    proc, root = _fake_host(tmp_path, usage_usec=2_000_000)
    assert cgroup_paths(4242, proc) == {"": "/system.slice/docker-abc.scope"}
    sampler = Sampler(Accelerators([]), cgroup_root=root, proc=proc)
    tracked = Tracked("k1", 4242, {})
    first = sampler.sample([tracked]).kernels["k1"]
    assert (first.cpu_pct, first.cpu_used_ms) == (0.0, 2000)
    assert (first.mem_used, first.mem_limit) == (200 * 2**20, None)  # page cache left out
    assert (first.io_read, first.io_write, first.net_rx, first.net_tx) == (4096, 8192, 1200, 800)
    _fake_host(tmp_path, usage_usec=2_000_000 + 10**9)  # far more cpu than wall time passed
    assert sampler.sample([tracked]).kernels["k1"].cpu_pct > 100
