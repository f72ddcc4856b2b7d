"""The control plane's memory when a run prints a lot and nobody reads it (issue 8.6).

    .venv/bin/python -m bench.unpolled_output [--mib 300]

Starts its own appliance, then through the polling execute API starts a query that writes
`--mib` MiB to stdout and never asks for more than the first chunk. Prints the control plane's
RSS before, while the output is produced, and after the session is destroyed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import trio

from client.config import ClientConfig
from client.sdk import Client
from shipyard.testing import Appliance, running_appliance


def _controlplane_pid(appliance: Appliance) -> int:
    assert appliance.process is not None
    for child in Path(f"/proc/{appliance.process.pid}/task").glob("*/children"):
        for pid in child.read_text().split():
            if b"controlplane" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    raise SystemExit("no control plane process under shipyard up")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for {pid}")


def _steady_rss(pid: int, settle: float = 3.0, limit: float = 240.0) -> float:
    """RSS once it stopped changing by more than 1 MiB for `settle` seconds."""
    deadline = time.monotonic() + limit
    last, since = _rss_mib(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _rss_mib(pid)
        if abs(now - last) > 1:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return now
    return _rss_mib(pid)


async def _start_flood(appliance: Appliance, mib: int) -> None:
    code = (
        f"import sys\nfor _ in range({mib}):\n    sys.stdout.write('x' * 2**20)\n"
        "sys.stdout.flush()\nopen('/home/work/flood-done', 'w').close()\n"
    )
    async with Client(ClientConfig.from_env(appliance.env())) as api:
        await api.create_session("python", name="flood-1", resources={"mem": "1g"})
        first = await api.request("POST", "/session/flood-1", body={"mode": "query", "code": code})
        print(f"first chunk: {first['result']['status']}; never polled again")


async def _warm_up(appliance: Appliance) -> None:
    """One small session through create, a polled run and destroy: the baseline is a control
    plane that has served one, not a cold one."""
    async with Client(ClientConfig.from_env(appliance.env())) as api:
        await api.create_session("python", name="warm-1")
        await api.request("POST", "/session/warm-1", body={"mode": "query", "code": "print(1)"})
        await api.destroy_session("warm-1")


async def _destroy(appliance: Appliance) -> None:
    async with Client(ClientConfig.from_env(appliance.env())) as api:
        await api.destroy_session("flood-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=300)
    args = parser.parse_args()
    with running_appliance() as appliance:
        pid = _controlplane_pid(appliance)
        trio.run(_warm_up, appliance)
        before = _steady_rss(pid)
        trio.run(_start_flood, appliance, args.mib)
        started = time.monotonic()
        peak = before
        while not list(appliance.state_dir.glob("**/work/flood-done")):  # printed it all
            peak = max(peak, _rss_mib(pid))
            if time.monotonic() - started > 600:
                raise SystemExit("the run did not finish printing in 10 minutes")
            time.sleep(0.2)
        during = _steady_rss(pid)
        print(f"printed in {time.monotonic() - started:.0f} s")
        trio.run(_destroy, appliance)
        after = _steady_rss(pid)
        print(f"control plane RSS: before {before:.0f} MiB, peak while printing {peak:.0f} MiB,")
        print(f"once printed (unread) {during:.0f} MiB,")
        print(f"after the session ended {after:.0f} MiB ({args.mib} MiB printed, never read)")


if __name__ == "__main__":
    main()
