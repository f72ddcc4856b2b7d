"""Scheduler throughput: placements per second and placement latency (issue 10 item 6).

    ./dev bench scheduler [--nodes 1000] [--pending 10000] [--postgres DSN] [--json PATH]

A control plane's database (SQLite in a temporary directory, and PostgreSQL when a DSN is
given: its public schema is dropped and made again) holds `--nodes` connected nodes (rows and
hub connections, as after their registration; nothing starts containers) and `--pending`
sessions of mixed sizes, some asking for GPUs, all PENDING. The scheduler then runs its passes
until every session is placed; what is timed is those passes, database writes and commits
included, as the server runs them (the callback that would start kernels only notes the time).
Latency is from the first pass's start to the commit that placed the session. Each database
is measured at several backlog sizes to show how the cost grows with the pending sessions.
`./dev bench scheduler` pins the process to one core (taskset -c 0).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

import wire
from controlplane.config import ControlPlaneConfig
from controlplane.core import Core
from controlplane.db.engine import create_engine, dispose
from controlplane.db.models import Image, Keypair, Node, Project, Session, StatusChange
from controlplane.nodehub import NodeConnection, NodeFacts
from controlplane.scheduler import Scheduler
from controlplane.testing import TEST_IMAGE

GiB = 2**30
SIZES = [  # (cpu, mem, cuda.device): mostly small, some large, a tenth with GPUs
    *[("0.5", "536870912", "0")] * 3,
    *[("1", str(GiB), "0")] * 3,
    ("2", str(4 * GiB), "0"),
    ("4", str(8 * GiB), "0"),
    ("2", str(8 * GiB), "1"),
    ("4", str(16 * GiB), "0"),
]


async def _nothing(_: str) -> None:
    return None


def _slots(n: int) -> dict[str, str]:
    return {"cpu": "32", "mem": str(128 * GiB), "cuda.device": "4" if n % 2 == 0 else "0"}


async def _populate(core: Core, nodes: int, pending: int) -> None:
    rng = random.Random(10)
    async with core.db() as db:
        admin = await db.scalar(select(Keypair))
        project = await db.scalar(select(Project))
        assert admin is not None and project is not None
        now = datetime.now(UTC)
        await db.execute(
            insert(Node),
            [
                {
                    "id": f"i-{n:04}",
                    "status": "ALIVE",
                    "architecture": "x86_64",
                    "network_mode": "none",
                    "version": "bench",
                    "available_slots": _slots(n),
                }
                for n in range(nodes)
            ],
        )
        await db.execute(
            insert(Image),
            [
                {
                    "node_id": f"i-{n:04}",
                    "name": TEST_IMAGE,
                    "digest": "sha256:bench",
                    "size_bytes": 1,
                    "architecture": "x86_64",
                    "labels": {},
                }
                for n in range(nodes)
            ],
        )
        rows = []
        for i in range(pending):
            cpu, mem, gpus = rng.choice(SIZES)
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "name": f"bench-{i:05}",
                    "access_key": admin.access_key,
                    "user_id": admin.user_id,
                    "domain_name": project.domain_name,
                    "project_id": project.id,
                    "type": "INTERACTIVE",
                    "image": TEST_IMAGE,
                    "status": "PENDING",
                    "status_info": "enqueued",
                    "requested_slots": {"cpu": cpu, "mem": mem, "cuda.device": gpus},
                    "created_at": now + timedelta(microseconds=i),
                }
            )
        await db.execute(insert(Session), rows)
        await db.execute(
            insert(StatusChange),
            [{"session_id": r["id"], "status": "PENDING", "reason": "enqueued"} for r in rows],
        )
        await db.commit()
    for n in range(nodes):  # their Register rows are written above; as registered
        conn = NodeConnection(f"i-{n:04}", _nothing)
        conn.facts = NodeFacts("default", wire.Slots.from_wire(_slots(n)), frozenset([TEST_IMAGE]))
        core.hub.attach(conn)


async def _measure(url: str, state: Path, nodes: int, pending: int) -> dict[str, Any]:
    config = ControlPlaneConfig(state_dir=state, node_token="bench", database_url=url)
    engine = create_engine(config.effective_database_url)
    try:
        core = Core(config, engine)
        await core.prepare()
        await _populate(core, nodes, pending)
        placed_at: dict[uuid.UUID, float] = {}
        scheduler = Scheduler(
            core, on_placed=lambda s: placed_at.setdefault(s, time.perf_counter())
        )
        start, cpu_start = time.perf_counter(), time.process_time()
        passes = 0
        while len(placed_at) < pending:
            await scheduler.schedule_once()
            passes += 1
            if passes > 20:
                raise SystemExit(f"only {len(placed_at)} of {pending} placed after 20 passes")
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start  # all threads: the driver's too
        latencies = sorted(t - start for t in placed_at.values())
        return {
            "nodes": nodes,
            "pending": pending,
            "passes": passes,
            "seconds": round(elapsed, 3),
            "placements_per_s": round(pending / elapsed),
            # what a busy machine does not distort as much: placements per CPU-second
            "cpu_seconds": round(cpu, 3),
            "placements_per_cpu_s": round(pending / cpu),
            "latency_ms": {
                "p50": round(statistics.median(latencies) * 1000, 1),
                "p95": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1),
                "max": round(latencies[-1] * 1000, 1),
            },
        }
    finally:
        await dispose(engine)


async def _fresh_postgres(dsn: str) -> None:
    engine = create_async_engine(dsn)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "runs": []}
    backlogs = sorted({max(1, args.pending // 4), max(1, args.pending // 2), args.pending})
    for database in ["sqlite", *(["postgres"] if args.postgres else [])]:
        for pending in backlogs:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{tmp}/cp.db"
                if database == "postgres":
                    await _fresh_postgres(args.postgres)
                    url = args.postgres
                run = await _measure(url, Path(tmp), args.nodes, pending)
            run["database"] = database
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=10000)
    parser.add_argument("--postgres", metavar="DSN", help="also measure on this PostgreSQL")
    parser.add_argument("--json", type=Path, help="write the results here too")
    arguments = parser.parse_args()
    outcome = anyio.run(main, arguments)
    if arguments.json:
        arguments.json.write_text(json.dumps(outcome, indent=2))
    sys.exit(0)
