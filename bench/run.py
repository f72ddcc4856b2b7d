"""End-to-end latency of Shipyard against the reference, a bare `docker run`.

    ./dev bench [--iterations N] [--image NAME]

Starts its own appliance (`shipyard up` in a temporary state directory), then, interleaved in one
run so that both see the same machine load:
  A  `shipyard run -c 'print(1)'`                       (create, execute, destroy, via the CLI)
  B  `docker run --rm --network none IMAGE python3 -c 'print(1)'`
and reports median, p95 and the ratio A/B. Then it measures create -> RUNNING latency through
the API (POST /session held until the session runs) and the destroy that follows.
Results are printed and written to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import trio

from client.config import ClientConfig
from client.sdk import Client
from shipyard.testing import Appliance, running_appliance

DEFAULT_IMAGE = "shipyard/python:3.11"


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or result.stdout != "1\n":
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": p95 * 1000,
        "min_ms": ordered[0] * 1000,
        "n": len(ordered),
    }


def bench_run(appliance: Appliance, image: str, iterations: int) -> dict[str, object]:
    env = appliance.env()
    shipyard = [sys.executable, "-m", "shipyard", "run", "-c", "print(1)"]
    docker_run = [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "never",
        image,
        "python3",
        "-c",
        "print(1)",
    ]
    for _ in range(2):  # warm caches on both sides
        _timed(shipyard, env)
        _timed(docker_run)
    ours, reference = [], []
    for _ in range(iterations):
        ours.append(_timed(shipyard, env))
        reference.append(_timed(docker_run))
    a, b = _summary(ours), _summary(reference)
    return {
        "shipyard_run": a,
        "docker_run": b,
        "ratio_median": a["median_ms"] / b["median_ms"],
        "ratio_p95": a["p95_ms"] / b["p95_ms"],
    }


async def _api_latency(config: ClientConfig, iterations: int) -> dict[str, object]:
    create, destroy = [], []
    async with Client(config) as api:
        for i in range(iterations + 2):
            start = time.perf_counter()
            created = await api.create_session(
                "python", name=f"bench-{i}", resources={"cpu": "1", "mem": "256m"}
            )
            mid = time.perf_counter()
            assert created["status"] == "RUNNING", created
            await api.destroy_session(created["sessionId"])
            end = time.perf_counter()
            if i >= 2:
                create.append(mid - start)
                destroy.append(end - mid)
    return {"create_to_running": _summary(create), "destroy": _summary(destroy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    args = parser.parse_args()
    report: dict[str, object] = {
        "image": args.image,
        "iterations": args.iterations,
        "when": datetime.now(UTC).isoformat(),
    }
    with running_appliance(alias_to=args.image) as appliance:
        report["run"] = bench_run(appliance, args.image, args.iterations)
        env = appliance.env()
        config = ClientConfig(
            env["SHIPYARD_ENDPOINT"], env["SHIPYARD_ACCESS_KEY"], env["SHIPYARD_SECRET_KEY"]
        )
        report["api"] = trio.run(_api_latency, config, args.iterations)
    run = report["run"]
    assert isinstance(run, dict)
    api = report["api"]
    assert isinstance(api, dict)
    print(f"image {args.image}, {args.iterations} interleaved iterations")
    print(f"{'':28}{'median':>10}{'p95':>10}")
    for label, key in (
        ("shipyard run -c print(1)", "shipyard_run"),
        ("docker run --rm", "docker_run"),
    ):
        print(f"{label:28}{run[key]['median_ms']:>8.0f}ms{run[key]['p95_ms']:>8.0f}ms")
    print(f"{'ratio (shipyard/docker)':28}{run['ratio_median']:>10.2f}{run['ratio_p95']:>10.2f}")
    for label, key in (("API create -> RUNNING", "create_to_running"), ("API destroy", "destroy")):
        print(f"{label:28}{api[key]['median_ms']:>8.0f}ms{api[key]['p95_ms']:>8.0f}ms")
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    path = out / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
