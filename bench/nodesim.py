"""Scale of the control plane: many simulated nodes against one control plane (issue 15 item 5).

    bench/nodesim.py [--nodes 1000] [--seconds 60] [--heartbeat 5] [--joins 100] [--log PATH]

(./dev bench runs it too, after its appliance stopped.)

A real control plane (`shipyard controlplane serve`, embedded SQLite, its own process) gets
`--nodes` nodes that each join with their own join token (`POST /admin/node-tokens`) and then
keep a WebSocket link open, registering and sending heartbeats every `--heartbeat` seconds; they
first dial in `--joins` a second (the time until all are registered is reported).
The nodes are the node's own agent (node/agent.py: link, Register, heartbeat loop, request
dispatch) on in-memory runtimes, all in one child process (the fleet); only kernel creation is
simulated: a CreateKernel makes an in-memory container and is answered at once, since no
program runs to dial in. While they run, API clients (in this process) keep calling: session
list, create (held until RUNNING on a simulated node) and destroy, GraphQL session and node
lists, at a steady pace. Measured over the window:

  api        latency of every call (median, p99, max), per kind and overall
  heartbeat  processing lag: from the node's send to the commit of the `last_contact` it set,
             seen by reading the database file every 0.2 s; heartbeats seen processed against
             sent; nodes not ALIVE at the end, and links that had to register again (a missed
             heartbeat)
  cpu, rss   of the control plane process (/proc): CPU as % of one core over the window, RSS
             at the end and its peak
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from client.config import ClientConfig
from client.sdk import Client
from controlplane.config import ControlPlaneConfig
from node.agent import Agent
from node.config import NodeConfig
from node.errors import NodeError
from node.kernels import LABEL_KERNEL, LABEL_NODE
from node.link import Endpoint
from node.runtime import ContainerSpec, ImageRecord
from node.testing import MemoryRuntime
from shipyard.testing import free_port, port_free, wait_for
from wire import CreateKernel, DestroyKernel, Heartbeat, KernelCreated, KernelDestroyed, Message

IMAGE = "shipyard-sim/python:3.11"
LABELS = {"ai.shipyard.kernel": "1", "ai.shipyard.aliases": "python"}
REGISTER_WAIT = 120.0  # seconds for every node to register, after the last one first dialed
JOINS_PER_SECOND = 100.0  # nodes dialing in for the first time, a second
API_WORKERS, API_PAUSE = 4, 0.1  # each worker: one call, then this pause (about 30 calls/s)
POLL = 0.2  # seconds between reads of the nodes' last_contact
CLOCK = os.sysconf("SC_CLK_TCK")


# --- the fleet (child process) -----------------------------------------------------------------


class SimAgent(Agent):
    """The node's agent, counting what it sends; kernels are in-memory records."""

    def __init__(self, config: NodeConfig, endpoint: Endpoint) -> None:
        image = ImageRecord("sha256:" + "51" * 32, [IMAGE], 1, "amd64", LABELS)
        super().__init__(config, MemoryRuntime([image]), endpoint)
        self.sim_runtime = self._runtime
        self.heartbeats: list[float] = []  # wall-clock send times
        self.registrations = 0

    async def send(self, message: Message) -> None:
        if isinstance(message, Heartbeat):
            self.heartbeats.append(time.time())
        await super().send(message)

    async def _register(self) -> Any:
        self.registrations += 1
        return await super()._register()

    async def _handle(self, request: Any) -> Any:
        node = self._config.node_id
        labels = {LABEL_KERNEL: getattr(request, "kernel_id", ""), LABEL_NODE: node}
        if isinstance(request, CreateKernel):
            spec = ContainerSpec(
                name=f"sim-{request.kernel_id}", image=request.image, command=[], labels=labels,
                user="65536:65536", environment={}, working_dir="/", binds=[], network_mode="none",
            )  # fmt: skip
            container_id = await self.sim_runtime.create(spec)
            await self.sim_runtime.start(container_id)
            return KernelCreated(container_id)
        if isinstance(request, DestroyKernel):
            for state in await self.sim_runtime.containers(labels):
                await self.sim_runtime.remove(state.id)
            return KernelDestroyed(None, "")
        raise NodeError(f"simulated node {node} runs no code ({request.type})")


async def _fleet(plan: dict[str, Any]) -> dict[str, Any]:
    """Run the nodes until SIGTERM; then each one's registrations and heartbeat send times."""
    endpoint = Endpoint.parse(plan["endpoint"])
    state_dir, interval = Path(plan["state_dir"]), plan["heartbeat"]
    agents = [
        SimAgent(
            NodeConfig(state_dir, plan["endpoint"], token, node_id=f"sim-{i:04}", cpu=16,
                       mem="64g", heartbeat_interval=interval, warm_pool=0),
            endpoint,
        )
        for i, token in enumerate(plan["tokens"])
    ]  # fmt: skip
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for agent in agents:  # at a steady pace, so that the heartbeats are spread too
                nursery.start_soon(agent.connect_forever)
                await trio.sleep(1 / plan["per_second"])
            async for _ in signals:
                nursery.cancel_scope.cancel()
    return {a._config.node_id: [a.registrations, a.heartbeats] for a in agents}


# --- the measurement (this process) ------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK  # utime, stime


def _memory_mb(pid: int) -> dict[str, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples) or [float("nan")]
    return {
        "n": len(samples),
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


async def _api_load(config: ClientConfig, seconds: float) -> dict[str, list[float]]:
    """Callers at a steady pace for `seconds`; the latency of each call, by kind."""
    latencies: dict[str, list[float]] = {}
    sessions = "{ compute_session_list(limit: 20, offset: 0) { total_count items { name } } }"
    agents = "{ agent_list(limit: 50, offset: 0) { total_count items { id status } } }"
    async with Client(config) as api:

        async def timed(kind: str, method: str, path: str, body: Any = None) -> Any:
            start = time.perf_counter()
            result = await api.request(method, path, body=body)
            latencies.setdefault(kind, []).append(time.perf_counter() - start)
            return result

        async def worker(n: int) -> None:
            for i in range(10**9):
                if i % 4 == 0:
                    await timed("session list", "GET", "/session")
                elif i % 4 == 1:
                    body = {"query": sessions if n % 2 else agents}
                    await timed("graphql", "POST", "/admin/gql", body)
                else:  # create, held until RUNNING on a simulated node; then destroy
                    start = time.perf_counter()
                    created = await api.create_session(
                        IMAGE, name=f"sim-{n}-{i}", resources={"cpu": "1", "mem": "1g"}
                    )
                    latencies.setdefault("create -> RUNNING", []).append(
                        time.perf_counter() - start
                    )
                    assert created["status"] == "RUNNING", created
                    await timed("destroy", "DELETE", f"/session/{created['sessionId']}")
                await trio.sleep(API_PAUSE)

        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                for n in range(API_WORKERS):
                    nursery.start_soon(worker, n)
    return latencies


async def _poll_contacts(db: Path, seen: dict[str, dict[float, float]], seconds: float) -> None:
    """Each node's `last_contact` values (when the control plane received a heartbeat) and when
    each was first seen committed, reading the database file every POLL seconds."""
    with trio.move_on_after(seconds):
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            while True:
                now = time.time()
                for node_id, contact in connection.execute("SELECT id, last_contact FROM nodes"):
                    when = datetime.fromisoformat(contact).replace(tzinfo=UTC).timestamp()
                    seen.setdefault(node_id, {}).setdefault(when, now)
                await trio.sleep(POLL)
        finally:
            connection.close()


def _heartbeat_figures(
    sent: dict[str, list[Any]], seen: dict[str, dict[float, float]], window: tuple[float, float]
) -> dict[str, Any]:
    """For each heartbeat sent in the window, the first commit of a `last_contact` received
    after it (and before the node's next one): its lag is from the send to that commit being
    seen (up to POLL late); those with none were not seen processed."""
    lags: list[float] = []
    unseen = 0
    for node_id, (_, times) in sent.items():
        commits = sorted(seen.get(node_id, {}).items())
        values = [value for value, _ in commits]
        for i, at in enumerate(times):
            if not window[0] <= at <= window[1] - 2.0:  # the last ones may still be on their way
                continue
            following = times[i + 1] if i + 1 < len(times) else float("inf")
            k = bisect_right(values, at)
            if k < len(values) and values[k] < following:
                lags.append(commits[k][1] - at)
            else:
                unseen += 1
    return {
        "lag": _summary(lags),
        "unseen": unseen,
        "reregistered": sum(1 for count, _ in sent.values() if count > 1),
    }


def simulate(
    nodes: int,
    seconds: float,
    heartbeat: float,
    per_second: float = JOINS_PER_SECOND,
    log_to: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shipyard-nodesim-") as tmp:
        state = Path(tmp)
        config = ControlPlaneConfig(state, secrets.token_urlsafe(32), port=free_port())
        config.dump(state / "controlplane.toml")
        cmd = [sys.executable, "-m", "shipyard", "controlplane", "serve", "--config"]
        with open(state / "controlplane.log", "ab") as log:
            server = subprocess.Popen([*cmd, str(state / "controlplane.toml")], stderr=log)
        fleet: subprocess.Popen[bytes] | None = None
        try:
            wait_for(lambda: not port_free(config.port), "the control plane to listen", 120)
            keypair = json.loads(config.admin_keypair_file.read_text())
            endpoint = f"http://127.0.0.1:{config.port}"
            client = ClientConfig(endpoint, keypair["access_key"], keypair["secret_key"])
            tokens = trio.run(_tokens, client, nodes)
            plan = {
                "endpoint": endpoint, "tokens": tokens, "heartbeat": heartbeat,
                "per_second": per_second, "state_dir": str(state / "node"),
                "out": str(state / "fleet.json"),
            }  # fmt: skip
            (state / "plan.json").write_text(json.dumps(plan))
            argv = [sys.executable, __file__, "--fleet", str(state / "plan.json")]
            fleet = subprocess.Popen(argv)
            joined = time.perf_counter()
            trio.run(_all_alive, client, nodes, REGISTER_WAIT + nodes / per_second)
            report: dict[str, Any] = {
                "nodes": nodes,
                "heartbeat_s": heartbeat,
                "seconds": seconds,
                "joins_per_second": per_second,
                "all_registered_s": time.perf_counter() - joined,
            }
            measured = trio.run(_measure, client, state / "controlplane.db", server.pid, seconds)
            report.update(measured.pop("report"))
            report["not_alive_at_end"] = trio.run(_not_alive, client)
            fleet.send_signal(signal.SIGTERM)
            fleet.wait(120)
            sent = json.loads((state / "fleet.json").read_text())
            report["heartbeats"] = _heartbeat_figures(sent, measured["seen"], measured["window"])
            return report
        finally:
            for process in (fleet, server):
                if process is not None and process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            if log_to is not None:
                shutil.copyfile(state / "controlplane.log", log_to)


async def _tokens(config: ClientConfig, count: int) -> list[str]:
    tokens: list[str] = []
    async with Client(config) as api:

        async def make(n: int) -> None:
            for _ in range(n):
                tokens.append((await api.request("POST", "/admin/node-tokens", body={}))["token"])

        async with trio.open_nursery() as nursery:
            for share in (count // 4 + (i < count % 4) for i in range(4)):
                nursery.start_soon(make, share)
    return tokens


async def _all_alive(config: ClientConfig, count: int, wait: float) -> None:
    """Wait until every node is registered, then register the image they report."""
    alive = 0
    async with Client(config) as api:
        with trio.move_on_after(wait):
            while True:  # polled: nothing tells us
                alive = (await api.request("GET", "/health", signed=False))["nodesAlive"]
                if alive >= count:
                    break
                await trio.sleep(0.2)
        if alive < count:
            raise SystemExit(f"only {alive} of {count} nodes registered in {wait:.0f} s")
        await api.register_image(IMAGE)


async def _not_alive(config: ClientConfig) -> int:
    async with Client(config) as api:
        return sum(1 for node in await api.list_nodes() if node["status"] != "ALIVE")


async def _measure(config: ClientConfig, db: Path, pid: int, seconds: float) -> dict[str, Any]:
    seen: dict[str, dict[float, float]] = {}
    cpu, start, wall = _cpu_seconds(pid), time.time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_poll_contacts, db, seen, seconds + 1.0)
        latencies = await _api_load(config, seconds)
    cpu_pct = (_cpu_seconds(pid) - cpu) / (time.perf_counter() - wall) * 100
    every = [x for values in latencies.values() for x in values]
    report = {
        "api": {kind: _summary(values) for kind, values in sorted(latencies.items())},
        "api_all": _summary(every),
        "controlplane_cpu_pct": cpu_pct,
        "controlplane_mb": _memory_mb(pid),
    }
    return {"report": report, "seen": seen, "window": (start, time.time())}


def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """bench/run.py's table rows: (measure, figure, reference, target)."""
    api, beats, memory = report["api_all"], report["heartbeats"], report["controlplane_mb"]
    lost = report["not_alive_at_end"] + beats["reregistered"]
    kinds = ", ".join(f"{k} {v['p99_ms']:.0f}" for k, v in report["api"].items())
    name = f"{report['nodes']} nodes: API p99 ({api['n']} calls)"
    return [
        (name, f"{api['p99_ms']:.0f} ms (med {api['median_ms']:.0f})", f"p99 by kind: {kinds}",
         "< 100 ms"),
        (f"{report['nodes']} nodes: heartbeat lag, missed", f"p99 {beats['lag']['p99_ms']:.0f} ms,"
         f" {lost} lost", f"{beats['lag']['n']} seen, {beats['unseen']} not seen processed",
         "0 missed"),
        (f"{report['nodes']} nodes: control plane CPU / RSS",
         f"{report['controlplane_cpu_pct']:.0f}% / {memory['VmRSS']:.0f} MB",
         f"peak RSS {memory['VmHWM']:.0f} MB; {report['joins_per_second']:.0f} joins/s: all in"
         f" {report['all_registered_s']:.1f} s",
         ""),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument(
        "--joins",
        type=float,
        default=JOINS_PER_SECOND,
        help="nodes dialing in a second at the start",
    )
    parser.add_argument("--log", type=Path, help="copy the control plane's log here")
    parser.add_argument("--fleet", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.fleet:
        plan = json.loads(args.fleet.read_text())
        Path(plan["out"]).write_text(json.dumps(trio.run(_fleet, plan)))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the children too (finally)
    report = simulate(args.nodes, args.seconds, args.heartbeat, args.joins, args.log)
    print(json.dumps(report, indent=2))
    for row in rows(report):
        print(f"{row[0]:56}{row[1]:22}{row[3]:16}{row[2]}")


if __name__ == "__main__":
    main()
