"""Doubles for the installer's text UI: a made-up machine and a scripted engine.

Used by tests/installer/test_tui.py, by the screenshots (installer/tui/screenshots.py) and by
`python -m installer.tui --demo`. None of them touches this machine: the engine double emits
the events of the steps the real engine names for the plan (`installer.engine.describe`), and
never runs one. Preflight and `describe` are not doubled: they are pure functions of the report
and the plan.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import trio

from installer.detect import Finding, Report, Status
from installer.engine import (
    Event,
    Finished,
    OnEvent,
    Outcome,
    RollingBack,
    StepFailed,
    StepFinished,
    StepLog,
    StepStarted,
    describe,
)
from installer.errors import PlanError
from installer.plan import Plan, redact
from installer.tui.app import InstallerApp

GiB = 2**30


def demo_report(
    *,
    engine: bool = True,
    pid1: str = "systemd",
    uid: int = 0,
    memory: int = 62 * GiB,
    root_free: int = 7 * GiB + GiB // 2,
) -> Report:
    """A Debian host with two GPUs, a big /data disk and a small root filesystem."""
    mounts = [
        {
            "mount_point": "/",
            "fs_type": "ext4",
            "source": "/dev/nvme0n1p2",
            "total_bytes": 64 * GiB,
            "free_bytes": root_free,
            "writable": True,
        },
        {
            "mount_point": "/data",
            "fs_type": "xfs",
            "source": "/dev/nvme1n1",
            "total_bytes": 3800 * GiB,
            "free_bytes": 3550 * GiB,
            "writable": True,
        },
    ]
    docker = (
        Finding(
            "docker",
            {"version": "20.10.24", "api": "1.41"},
            "ok",
            "Docker 20.10.24 (API 1.41) answers on its socket",
        )
        if engine
        else Finding(
            "docker",
            {"installed": False},
            "error",
            "no container engine: install Docker (Debian/Ubuntu: apt-get install docker.io, or"
            " let the installer do it with install_engine = true)",
        )
    )
    init = (
        Finding("pid1", pid1, "ok", "PID 1 is systemd 252 (252.30-1~deb12u2)")
        if pid1 == "systemd"
        else Finding(
            "pid1",
            pid1,
            "error",
            f"PID 1 is {pid1}, not systemd: the installer runs Shipyard as systemd services"
            " (without systemd, run it in the foreground with `shipyard up`)",
        )
    )
    pretty = "Debian GNU/Linux 12 (bookworm)"
    os_info = {"pretty": pretty, "id": "debian", "debian_like": True}
    memory_status: Status = "error" if memory < 2 * GiB else "warning" if memory < 4 * GiB else "ok"
    return Report(
        system=[
            Finding("os", os_info, "ok", pretty),
            Finding("kernel", "6.1.0-28-amd64", "info", "Linux 6.1.0-28-amd64"),
            Finding("arch", "x86_64", "ok", "x86_64 processor"),
            Finding("cpus", 32, "ok", "32 CPU(s) available to this process"),
            Finding("memory", memory, memory_status, f"{memory / GiB:.1f} GiB of memory"),
            Finding(
                "user",
                uid,
                "ok" if uid == 0 else "warning",
                "running as root" if uid == 0 else f"running as uid {uid}: installing needs root",
            ),
            Finding("listening", ["0.0.0.0:22"], "info", "1 TCP port(s) in use here"),
            Finding("virtualization", "none", "info", "bare metal (by systemd-detect-virt)"),
        ],
        engine=[docker],
        init=[init],
        accelerators=[
            Finding(
                "nvidia",
                {"driver": "550.127.05", "cuda": "12.4", "count": 2},
                "ok",
                "driver 550.127.05 (CUDA 12.4), 2 GPU(s)",
            ),
            Finding("nvidia gpu 0", {"name": "NVIDIA L40S"}, "ok", "NVIDIA L40S, 45 GiB"),
            Finding("nvidia gpu 1", {"name": "NVIDIA L40S"}, "ok", "NVIDIA L40S, 45 GiB"),
            Finding("amd", None, "info", "no AMD GPU (no KFD topology, no AMD DRM card)"),
        ],
        storage=[
            Finding("mounts", mounts, "info", "2 mounted filesystem(s) holding data"),
            Finding(
                "vfolder candidates",
                ["/data", "/"],
                "ok",
                f"/data (xfs, 3550 GiB free); / (ext4, {root_free // GiB} GiB free)",
            ),
            Finding(
                "state dir space",
                root_free,
                "ok" if root_free >= 10 * GiB else "warning",
                f"{root_free / GiB:.1f} GiB free for /var/lib/shipyard (on /)"
                + ("; 10 GiB or more is recommended" if root_free < 10 * GiB else ""),
            ),
        ],
        database=[
            Finding(
                "postgresql",
                None,
                "info",
                "no PostgreSQL here; the embedded SQLite database needs none",
            )
        ],
        installation=[Finding("shipyard", None, "info", "Shipyard is not installed here")],
    )


@dataclass
class FakeDetect:
    """`detect()` that returns a fixed report (after `delay` seconds)."""

    report: Report
    delay: float = 0.0
    calls: int = 0

    async def __call__(self) -> Report:
        self.calls += 1
        await trio.sleep(self.delay)
        return self.report


@dataclass
class FakeDatabase:
    """`check_database(url)` that "connects" only to the URLs in `reachable`."""

    reachable: set[str] = field(default_factory=set)
    checked: list[str] = field(default_factory=list)

    async def __call__(self, url: str) -> None:
        self.checked.append(url)
        await trio.lowlevel.checkpoint()
        if url not in self.reachable:
            raise PlanError(f"cannot use the database at {redact(url)}: connection refused")


class FakeEngine:
    """Stands in for `installer.engine.install`: emits the engine's events for the steps the
    real engine would run (`installer.engine.describe`), in order, and changes nothing.

    `fail_at` makes that step fail (and the steps started so far roll back, as the engine's do);
    `hang_at` makes that step wait until cancelled, as a slow `apt-get` would. `delay` slows
    every step down, for the demo.
    """

    def __init__(
        self,
        *,
        fail_at: str | None = None,
        hang_at: str | None = None,
        delay: float = 0.0,
        error: str = "shipyard-controlplane.service did not start: exit status 1",
        fix: str = "see journalctl -u shipyard-controlplane.service",
    ) -> None:
        self.fail_at = fail_at
        self.hang_at = hang_at
        self.delay = delay
        self.error = error
        self.fix = fix
        self.plans: list[Plan] = []
        self.events: list[Event] = []
        self.hanging = threading.Event()  # set when the engine reached `hang_at`

    async def install(self, plan: Plan, on_event: OnEvent) -> Outcome:
        def emit(event: Event) -> None:
            self.events.append(event)
            on_event(event)

        self.plans.append(plan)
        emit(StepStarted("preflight", "Check this machine against the plan"))
        emit(StepLog("preflight", "no problems"))
        emit(StepFinished("preflight", False))
        started: list[str] = []
        try:
            for name, title in describe(plan):
                emit(StepStarted(name, title))
                started.append(name)
                if name == self.hang_at:
                    self.hanging.set()
                    await trio.sleep_forever()
                await trio.sleep(self.delay)
                emit(StepLog(name, _LOG_LINES.get(name, "done")))
                if name == self.fail_at:
                    emit(StepFailed(name, self.error, self.fix))
                    await self._rollback(started, emit)
                    summary = _summary(plan) | {
                        "failed_step": name,
                        "error": self.error,
                        "fix": self.fix,
                        "rolled_back": True,
                    }
                    emit(Finished(False, summary))
                    return Outcome(False, summary, (), (), self.error, self.fix)
                emit(StepFinished(name, True))
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._rollback(started, emit)
            raise
        summary = _summary(plan) | {"verified": True}
        emit(Finished(True, summary))
        return Outcome(True, summary, tuple(sorted(started)))

    async def _rollback(self, started: list[str], emit: OnEvent) -> None:
        for name in reversed(started):
            emit(RollingBack(name))
            await trio.sleep(self.delay / 4)


_LOG_LINES = {
    "state-dirs": "created /var/lib/shipyard (0700)",
    "executable": "copied to /usr/local/bin/shipyard (version 0.1.0)",
    "configs": "wrote /etc/shipyard/controlplane.toml, /etc/shipyard/node.toml",
    "units": "wrote shipyard-controlplane.service, shipyard-node.service",
    "database": "migrated the schema to revision 0002",
    "services": "systemctl enable --now shipyard-controlplane.service shipyard-node.service",
    "health": "the control plane answers; the node registered",
    "client-env": "wrote /etc/shipyard/client.env (0600)",
    "verify": "a session on image python printed 42",
}


def _summary(plan: Plan) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "role": plan.role,
        "endpoint": plan.endpoint,
        "node_id": plan.node_id or "i-demo-host",
        "units": plan.units,
        "executable": str(plan.executable),
        "version": "0.1.0",
        "config_dir": str(plan.config_dir),
        "state_dir": str(plan.state_dir),
    }
    if plan.role == "all-in-one":
        summary["client_env"] = str(plan.config_dir / "client.env")
        summary["admin_access_key"] = "AKIAIOSFODNN7EXAMPLE"
    return summary


def fake_app(
    *,
    report: Report | None = None,
    engine: FakeEngine | None = None,
    database: FakeDatabase | None = None,
    detect_delay: float = 0.0,
    demo: bool = False,
) -> InstallerApp:
    """The installer app wired to doubles (the real preflight)."""
    engine = engine or FakeEngine()
    return InstallerApp(
        detect=FakeDetect(report or demo_report(), delay=detect_delay),
        check_database=database or FakeDatabase(),
        install=engine.install,
        demo=demo,
    )


def demo_app(fail_at: str | None = None) -> InstallerApp:
    """What `--demo` runs: the doubles, slowed down so that the progress can be watched."""
    return fake_app(
        engine=FakeEngine(fail_at=fail_at, delay=0.6),
        database=FakeDatabase({"postgresql+asyncpg://shipyard:secret@127.0.0.1:5432/shipyard"}),
        detect_delay=1.0,
        demo=True,
    )
