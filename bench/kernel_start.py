"""Where a new kernel's start goes on this machine: each step of the node's create, and the
container engine's CPU for it (the part of a burst no change to Shipyard lowers).

    .venv/bin/python bench/kernel_start.py [--kernels N] [--cpu SHARE] [--image NAME]

Runs the node's own `Kernels` on the Docker engine (as root, like the node: the work
filesystems are loop-mounted), without a control plane: N kernels one after another, each
created, asked `print(1)` and removed. Prints the median (and least) time of each step and the
engine's CPU per kernel for its create and start, and for its removal (`run.EngineCPU`: what
else uses the engine meanwhile counts too; the load average is printed beside).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from run import DEFAULT_IMAGE, EngineCPU

from node import hostfs
from node.config import NodeConfig
from node.kernels import Kernels
from node.runtime import DockerRuntime
from wire import CreateKernel


def _timing(steps: dict[str, list[float]], name: str, call: Callable[..., Awaitable[Any]]) -> Any:
    """`call`, recording how long each of its calls takes under `name`."""

    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            steps.setdefault(name, []).append((time.perf_counter() - start) * 1000)

    return timed


async def measure(image: str, count: int, cpu: str) -> None:
    state = Path(tempfile.mkdtemp(prefix="sy-ks-", dir="/tmp"))  # short: socket paths
    config = NodeConfig(
        state_dir=state, controlplane_url="http://127.0.0.1:1", node_token="-",
        node_id=f"i-bench-{uuid.uuid4().hex[:8]}", work_size="64m", warm_pool=0,
    )  # fmt: skip
    hostfs.install_runner(state)
    runtime = await DockerRuntime.connect()
    kernels = Kernels(config, runtime)
    steps: dict[str, list[float]] = {}
    for obj, method, name in (
        (kernels, "_make_dir", "kernel folder"),
        (kernels, "_make_work_fs", "work filesystem (beside the create)"),
        (runtime, "create", "engine: create"),
        (runtime, "start", "engine: start"),
        (kernels, "_wait_ready", "runner's first answer"),
        (runtime, "update", "engine: its own CPU share"),
        (runtime, "remove", "engine: remove"),
        (kernels, "_remove_dir", "kernel folder's removal"),
    ):
        setattr(obj, method, _timing(steps, name, getattr(obj, method)))
    engine = {"create and start": 0.0, "removal": 0.0}
    try:
        for _ in range(count):
            kernel_id = str(uuid.uuid4())
            req = CreateKernel("", kernel_id, "s", "-", image, {"cpu": cpu, "mem": "256m"})
            with EngineCPU() as used:
                start = time.perf_counter()
                await kernels.create(req)
                steps.setdefault("whole create", []).append((time.perf_counter() - start) * 1000)
            engine["create and start"] += used.used_ms / count
            kernel = await kernels.get(kernel_id)
            start = time.perf_counter()
            async with kernels.connect(kernel) as conn:
                await conn.send({"op": "query", "code": "print(1)"})
                while (event := await conn.receive()) and event.get("kind") != "finished":
                    pass
            steps.setdefault("first query", []).append((time.perf_counter() - start) * 1000)
            with EngineCPU() as used:
                await kernels.destroy(kernel_id)
            engine["removal"] += used.used_ms / count
    finally:
        kernels.close()
        runtime.close()
        hostfs.remove_kernel_dirs(state)
        hostfs.remove_tree(state)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{count} kernels of {image} at cpu {cpu}, one after another; load average {load}")
    for name, values in steps.items():
        print(f"  {name:40} {statistics.median(values):7.1f} ms (least {min(values):.1f})")
    for name, used_ms in engine.items():
        print(f"  engine CPU per kernel, {name:24} {used_ms:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", type=int, default=10)
    parser.add_argument("--cpu", default="1")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    args = parser.parse_args()
    trio.run(measure, args.image, args.kernels, args.cpu)


if __name__ == "__main__":
    main()
