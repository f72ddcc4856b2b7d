"""End-to-end figures of Shipyard, each beside its reference measured in the same run.

    ./dev bench [--iterations N] [--burst N] [--image NAME] [--smoke]

Starts its own appliance (`shipyard up` in a temporary state directory) whose node keeps warm
kernels of IMAGE (node.toml `warm_pool_images`), then measures, on this machine as it is:

  run        `shipyard run -c 'print(1)'` from a warm kernel, the same with `-e` (a session
             environment is fixed at container creation, so the node makes a new kernel: the
             figure without a pool), and the reference `docker run --rm --network none IMAGE
             python3 -c 'print(1)'`, interleaved; medians and the ratios to docker run. Each
             starts once the node is settled (its pool full again, the last session's container
             gone), so none pays for the refill or removal the one before caused
  client     process start -> first request of `shipyard run` (a local socket notes when the
             request arrives) and the CPU time it took, and `shipyard --version`, beside
             `python -c pass`; the checkout's client compiled to bytecode first, as installing
             it does
  api        create -> RUNNING (`POST /session`, held until it runs; 1.5 s apart, the time the
             pool takes to refill) and destroy, and the query round trip on a running session
             (`POST /session/<id>` with `1`, kept-alive connection); beside them the CPU time
             the control plane and the node spent on each (a floor for the latency, whatever
             the machine's load)
  burst      N run sessions at once through the API (create, run `print(i)`, check the output):
             time from the first request to the last result (and to the last RUNNING); then
             their removal. Sessions that fail are counted beside the figure. Beside the CPU of
             the control plane and the node, the container engine's (dockerd, containerd, and
             the shims with the runc they ran): the floor that no change to Shipyard lowers.
  rss        resident memory of the idle control plane and node processes
  nodes      after the appliance stopped: N simulated nodes against a control plane of their
             own (bench/nodesim.py): API p99, heartbeat lag and misses, control plane CPU/RSS

The node gives each kernel a 64 MiB work filesystem (node.toml `work_size`; 1 GiB by default,
preallocated), so that the burst fits the disk of a small machine.

The `shipyard` command measured (run, client) is what a user of this checkout runs: the venv's
console script, or `--command PATH` (an installed one: `shipyard install --executable PATH`).

Prints one table and writes it as JSON to bench/results/<time>.json, with the load average
beside the figures (the machine may be shared). `--smoke` is the tiny run CI does so that the
benchmark keeps working: 2 iterations, a burst of 3, 20 nodes for 5 s (1 s heartbeats).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nodesim
import trio

from client.config import ClientConfig
from client.fastrun import Connection
from client.sdk import Client
from shipyard.testing import Appliance, running_appliance

DEFAULT_IMAGE = "shipyard/python:3.11"
SMALL = {"cpu": "0.02", "mem": "64m"}  # burst sessions: 100 of them fit a 2-core node


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or result.stdout != "1\n":
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": p90 * 1000,
        "min_ms": ordered[0] * 1000,
        "n": len(ordered),
    }


def _settled(appliance: Appliance, warm: int) -> None:
    """Wait (at most 30 s) until the node holds just its `warm` warm kernels, all running."""
    label = f"label=ai.shipyard.node-id={appliance.node_id}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = subprocess.run(
            ["docker", "ps", "--all", "--filter", label, "--format", "{{.State}}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        if listed == ["running"] * warm:
            return
        time.sleep(0.05)
    raise SystemExit(f"the node did not settle within 30 s: {listed}")


def bench_run(
    appliance: Appliance, image: str, iterations: int, pool: int, command: str
) -> dict[str, Any]:
    env = appliance.env()
    shipyard = [command, "run"]
    warm = [*shipyard, "-c", "print(1)"]
    cold = [*shipyard, "-e", "BENCH=cold", "-c", "print(1)"]
    docker = ["docker", "run", "--rm", "--network", "none", "--pull", "never"]
    docker += [image, "python3", "-c", "print(1)"]
    samples: dict[str, list[float]] = {"warm": [], "cold": [], "docker": []}
    commands = {"warm": (warm, env), "cold": (cold, env), "docker": (docker, None)}
    for _ in range(2):  # caches on every side
        for cmd, cmd_env in commands.values():
            _settled(appliance, pool)
            _timed(cmd, cmd_env)
    for _ in range(iterations):
        for key, (cmd, cmd_env) in commands.items():
            _settled(appliance, pool)
            samples[key].append(_timed(cmd, cmd_env))
    result: dict[str, Any] = {key: _summary(values) for key, values in samples.items()}
    docker_median = result["docker"]["median_ms"]
    result["ratio_warm"] = result["warm"]["median_ms"] / docker_median
    result["ratio_cold"] = result["cold"]["median_ms"] / docker_median
    return result


def compile_client() -> None:
    """Compile the checkout's client to bytecode, as installing it does (pip compiles what it
    installs; the executable carries its bytecode): with PYTHONDONTWRITEBYTECODE set, as some
    shells have it, every measured start would compile the client again, which no installed
    copy does (about half the fast `shipyard run`'s start to its first request)."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("shipyard", "client", "hostlib"):
        compileall.compile_dir(root / package, quiet=1)


def bench_client(iterations: int, command: str) -> dict[str, Any]:
    """Process start -> the first request's bytes on a socket that never answers, and the CPU
    time the process had spent by then (killed there: its rusage is that, give or take the
    kill; what a loaded machine barely changes)."""
    starts: list[float] = []
    cpu: list[float] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = {
            **os.environ,
            "SHIPYARD_ENDPOINT": f"http://127.0.0.1:{port}",
            "SHIPYARD_ACCESS_KEY": "AKIABENCH",
            "SHIPYARD_SECRET_KEY": "bench",
        }
        for _ in range(iterations + 1):
            start = time.perf_counter()
            process = subprocess.Popen(
                [command, "run", "-c", "print(1)"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            conn, _ = listener.accept()
            with conn:
                conn.recv(1)
                starts.append(time.perf_counter() - start)
                process.kill()
                _, _, usage = os.wait4(process.pid, 0)
                process.returncode = -9  # reaped here: Popen must not wait for it again
                cpu.append(usage.ru_utime + usage.ru_stime)
    version = [_elapsed([command, "--version"]) for _ in range(iterations + 1)]
    bare = [_elapsed([sys.executable, "-c", "pass"]) for _ in range(iterations + 1)]
    return {
        "command": command,
        "first_request": _summary(starts[1:]),
        "first_request_cpu": _summary(cpu[1:]),
        "version": _summary(version[1:]),
        "python_pass": _summary(bare[1:]),
    }


def _elapsed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_api(appliance: Appliance, config: ClientConfig, iterations: int) -> dict[str, Any]:
    """The latencies, and the CPU time the control plane and the node spent on each create and
    query (what bounds the latency on a busy machine, whatever its load)."""
    api = Connection(config)
    api.connect()
    roles = _roles(appliance)
    create, destroy, query = [], [], []
    cpu = {"create": dict.fromkeys(roles, 0.0), "query": dict.fromkeys(roles, 0.0)}
    for i in range(iterations + 1):
        time.sleep(1.5)  # sessions 1.5 s apart: the pool has refilled
        used = _cpu_ms(roles)
        start = time.perf_counter()
        created = api.call("POST", "/session", _create_body(f"bench-{i}", {}))
        mid = time.perf_counter()
        assert created["status"] == "RUNNING", created
        used_create = _cpu_ms(roles)
        path = f"/session/{created['sessionId']}"
        for _ in range(5):
            before = time.perf_counter()
            result = api.call("POST", path, {"mode": "query", "code": "1", "runId": None})
            assert result["result"]["status"] == "finished", result
            if i:
                query.append(time.perf_counter() - before)
        used_query = _cpu_ms(roles)
        before = time.perf_counter()
        api.call("DELETE", path)
        if i:
            create.append(mid - start)
            destroy.append(time.perf_counter() - before)
            for role in roles:
                cpu["create"][role] += (used_create[role] - used[role]) / iterations
                cpu["query"][role] += (used_query[role] - used_create[role]) / (5 * iterations)
    api.close()
    return {
        "create_to_running": _summary(create),
        "query_round_trip": _summary(query),
        "destroy": _summary(destroy),
        "cpu_ms": cpu,
    }


def _create_body(name: str, resources: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": "python",
        "config": {"resources": resources},
        "enqueueOnly": False,
        "maxWaitSeconds": 0,
    }


async def _burst(config: ClientConfig, count: int) -> dict[str, Any]:
    running: list[float] = []
    done: list[float] = []
    failed: list[str] = []  # counted, not fatal: the other figures of the run are kept
    ids: list[str] = []
    async with Client(config) as api:

        async def one(i: int) -> None:
            created = await api.create_session("python", name=f"burst-{i}", resources=SMALL)
            ids.append(created["sessionId"])
            if created["status"] != "RUNNING":
                failed.append(f"burst-{i} {created['status']}: {created.get('statusInfo')}")
                return
            running.append(time.perf_counter())
            path = f"/session/{created['sessionId']}"
            body: dict[str, Any] = {"mode": "query", "code": f"print({i})", "runId": None}
            output = ""
            while True:
                result = (await api.request("POST", path, body=body))["result"]
                output += "".join(data for kind, data in result["console"] if kind == "stdout")
                if result["status"] == "finished":
                    break
                body = {"mode": "continue", "code": "", "runId": result["runId"]}
            if (output, result["exitCode"]) != (f"{i}\n", 0):
                failed.append(f"burst-{i} printed {output!r}, exit code {result['exitCode']}")
                return
            done.append(time.perf_counter())

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
        removal = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for session_id in ids:
                nursery.start_soon(api.destroy_session, session_id)
        removed = time.perf_counter()
    return {
        "sessions": count,
        "failed": len(failed),
        "first_failure": failed[0] if failed else None,
        "first_request_to_last_result_s": max(done, default=start) - start,
        "first_request_to_last_running_s": max(running, default=start) - start,
        "removal_s": removed - removal,
    }


def _roles(appliance: Appliance) -> dict[str, str]:
    """The pids of the appliance's control plane and node (children of `shipyard up`)."""
    assert appliance.process is not None
    found: dict[str, str] = {}
    children = Path(f"/proc/{appliance.process.pid}/task/{appliance.process.pid}/children")
    for pid in children.read_text().split():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        role = next((r for r in ("controlplane", "node") if r.encode() in cmdline), None)
        if role:
            found[role] = pid
    return found


def rss(appliance: Appliance) -> dict[str, float]:
    """MB resident of the appliance's control plane and node."""
    found: dict[str, float] = {}
    for role, pid in _roles(appliance).items():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                found[role] = int(line.split()[1]) / 1024
    return found


def _cpu_ms(roles: dict[str, str]) -> dict[str, float]:
    """CPU time (user and system) each process has used so far, in ms."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for role, pid in roles.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[role] = (int(fields[11]) + int(fields[12])) * 1000 / tick  # utime, stime
    return used


class EngineCPU:
    """CPU time the container engine spends while this lasts: dockerd and containerd (with the
    children they reaped), and each container's shim with the runc it ran, read from /proc. A
    shim exits with its container, so every shim is sampled every 20 ms until then. Whatever
    else uses the engine meanwhile counts too."""

    def __init__(self) -> None:
        self._base: dict[str, float] = {}
        self._shims: dict[str, float] = {}  # pid -> CPU last seen
        self._shim_base: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self.used_ms = 0.0

    def __enter__(self) -> EngineCPU:
        self._base = self._daemons()
        self._sample_shims()
        self._shim_base = dict(self._shims)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        now = self._daemons()
        daemons = sum(now.get(pid, 0.0) - base for pid, base in self._base.items())
        shims = sum(used - self._shim_base.get(pid, 0.0) for pid, used in self._shims.items())
        self.used_ms = daemons + shims

    def _follow(self) -> None:
        while not self._stop.wait(0.02):
            self._sample_shims()

    def _sample_shims(self) -> None:
        for pid, used in _engine_processes(("containerd-shim",)).items():
            self._shims[pid] = used

    @staticmethod
    def _daemons() -> dict[str, float]:
        return _engine_processes(("dockerd", "containerd"), exact=True)


def _engine_processes(names: tuple[str, ...], *, exact: bool = False) -> dict[str, float]:
    """pid -> CPU ms (its own and its reaped children's) of the processes with these names."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            comm = (proc / "comm").read_text().strip()
            if not (comm in names if exact else comm.startswith(names)):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
        found[proc.name] = sum(int(f) for f in fields[11:15]) * 1000 / tick
    return found


def _section(name: str, work: Callable[[], Any], report: dict[str, Any]) -> None:
    started = time.perf_counter()
    report[name] = work()
    print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--nodes", type=int, default=1000, help="simulated nodes (0: none)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument(
        "--command",
        default=str(Path(sys.executable).with_name("shipyard")),
        help="the shipyard command to measure (default: this venv's; not a one-file program:"
        " the client row kills it, and its bootloader leaves Python and its folder behind)",
    )
    args = parser.parse_args()
    node_seconds, heartbeat = 60.0, 5.0
    if args.smoke:
        args.iterations, args.burst, args.nodes = 2, 3, 20
        node_seconds, heartbeat = 5.0, 1.0
    report: dict[str, Any] = {
        "image": args.image,
        "iterations": args.iterations,
        "when": datetime.now(UTC).isoformat(),
        "load_before": os.getloadavg(),
    }
    # 64 MiB work filesystems: a burst of 100 kernels must fit the disk (1 GiB each by default)
    pool = 2
    node = {"warm_pool": pool, "warm_pool_images": [args.image], "work_size": "64m"}
    compile_client()
    with running_appliance(alias_to=args.image, node=node) as appliance:
        env = appliance.env()
        config = ClientConfig(
            env["SHIPYARD_ENDPOINT"], env["SHIPYARD_ACCESS_KEY"], env["SHIPYARD_SECRET_KEY"]
        )
        time.sleep(3)  # settle: the node fills its pool, start-up work ends
        _section("rss", lambda: rss(appliance), report)
        work = lambda: bench_run(  # noqa: E731
            appliance, args.image, args.iterations, pool, args.command
        )
        _section("run", work, report)
        _section("client", lambda: bench_client(args.iterations, args.command), report)
        _section("api", lambda: bench_api(appliance, config, args.iterations), report)
        roles = _roles(appliance)
        used = _cpu_ms(roles)
        with EngineCPU() as engine:
            _section("burst", lambda: trio.run(_burst, config, args.burst), report)
        after = _cpu_ms(roles)  # the burst's and its removal's
        report["burst"]["cpu_s"] = {role: (after[role] - used[role]) / 1000 for role in roles}
        report["burst"]["cpu_s"]["engine"] = engine.used_ms / 1000
    if args.nodes:
        work = lambda: nodesim.simulate(args.nodes, node_seconds, heartbeat)  # noqa: E731
        _section("nodes", work, report)
    report["load_after"] = os.getloadavg()
    print(table(report))
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    path = out / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}{'-smoke' if args.smoke else ''}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"written to {path}")


def table(report: dict[str, Any]) -> str:
    run, client, api = report["run"], report["client"], report["api"]
    burst, memory = report["burst"], report["rss"]

    def ms(summary: dict[str, float]) -> str:
        return f"{summary['median_ms']:.0f} ms (p90 {summary['p90_ms']:.0f})"

    docker = f"docker run --rm: {ms(run['docker'])}"

    def cpu(what: str) -> str:
        used = api["cpu_ms"][what]
        return f"CPU each: control plane {used['controlplane']:.1f} ms, node {used['node']:.1f} ms"

    rows = [
        ("shipyard run -c print(1), warm pool", ms(run["warm"]),
         f"{run['ratio_warm']:.2f}x {docker}", "<= 0.8x"),
        ("shipyard run -c print(1), no pool", ms(run["cold"]),
         f"{run['ratio_cold']:.2f}x {docker}", "<= 1.2x"),
        ("client start -> first request", ms(client["first_request"]),
         f"CPU {ms(client['first_request_cpu'])}; python -c pass: {ms(client['python_pass'])}",
         "< 60 ms"),
        ("shipyard --version", ms(client["version"]), f"command: {client['command']}",
         "<= 100 ms"),
        ("API create -> RUNNING (warm)", ms(api["create_to_running"]), cpu("create"),
         "<= 50 ms"),
        ("query round trip", ms(api["query_round_trip"]), cpu("query"), "<= 10 ms"),
        ("API destroy", ms(api["destroy"]), "", ""),
        (f"burst of {burst['sessions']} runs, first request -> last result",
         f"{burst['first_request_to_last_result_s']:.1f} s"
         + (f" ({burst['failed']} failed)" if burst["failed"] else ""),
         f"last RUNNING at {burst['first_request_to_last_running_s']:.1f} s; "
         f"their removal {burst['removal_s']:.1f} s; CPU of both: control plane "
         f"{burst['cpu_s']['controlplane']:.1f} s, node {burst['cpu_s']['node']:.1f} s, "
         f"container engine {burst['cpu_s']['engine']:.1f} s",
         "<= 10 s"),
        ("idle RSS control plane / node",
         f"{memory.get('controlplane', 0):.0f} / {memory.get('node', 0):.0f} MB", "",
         "<= 150 / 80 MB"),
    ]  # fmt: skip
    load = " ".join(f"{x:.1f}" for x in report["load_before"])
    lines = [f"image {report['image']}, {report['iterations']} interleaved iterations, "
             f"load average before {load}"]  # fmt: skip
    if "nodes" in report:
        rows += nodesim.rows(report["nodes"])
    lines.append(f"{'measure':56}{'figure':22}{'target':16}reference (same run)")
    lines += [f"{a:56}{b:22}{d:16}{c}" for a, b, c, d in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
