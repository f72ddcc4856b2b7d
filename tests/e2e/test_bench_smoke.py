"""`./dev bench` keeps working: its tiny run (two iterations, a burst of three, twenty simulated
nodes for five seconds) completes and prints every row of its table, and no simulated node
missed a heartbeat. The figures themselves are not checked: benchmarks are not timed tests
(`./dev bench` on a quiet machine gives them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.testing import TEST_IMAGE

pytestmark = pytest.mark.docker

BENCH = Path(__file__).parents[2] / "bench" / "run.py"
ROWS = (
    "shipyard run -c print(1), warm pool",
    "shipyard run -c print(1), no pool",
    "client start -> first request",
    "API create -> RUNNING (warm)",
    "query round trip",
    "burst of 3 runs",
    "idle RSS control plane / node",
    "20 nodes: API p99",
    "20 nodes: heartbeat lag, missed",
    "20 nodes: control plane CPU / RSS",
)


def test_the_benchmark_runs_at_tiny_sizes() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--image", TEST_IMAGE],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for row in ROWS:
        assert row in done.stdout, done.stdout
    assert " failed)" not in done.stdout, done.stdout  # every burst session ran
    assert ", 0 lost" in done.stdout, done.stdout  # no simulated node missed a heartbeat
    written = done.stdout.strip().splitlines()[-1].removeprefix("written to ")
    Path(written).unlink()  # a smoke run's figures are not results
