"""For driving the installer's text UI without installing on this machine: a made-up machine
(the detection report, a database check) and a sandbox the real engine installs into.

Used by tests/installer/test_tui.py, by the screenshots (installer/tui/screenshots.py) and by
`python -m installer.tui --demo`. The engine is never doubled: `Sandbox` runs
`installer.engine.install` with every path under its root and systemd played by
`installer.testing.FakeSystemdHost`, which runs the units' services for real. Preflight and
`describe` are not doubled either: they are pure functions of the report and the plan.
"""

from __future__ import annotations

import fcntl
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from installer._host import LABEL_NODE
from installer.detect import Finding, Report, Status
from installer.engine import Event, OnEvent, Outcome, install
from installer.errors import PlanError
from installer.plan import Plan, redact
from installer.testing import FakeSystemdHost
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
            Finding(
                "nvidia gpu 0",
                {"name": "NVIDIA L40S", "uuid": "GPU-3b1f0c2e-8d1a-4f4e-9c1b-5e6a7d8c9f01"},
                "ok",
                "NVIDIA L40S, 45 GiB",
            ),
            Finding(
                "nvidia gpu 1",
                {"name": "NVIDIA L40S", "uuid": "GPU-7c2d4e6f-1a3b-4c5d-8e9f-0a1b2c3d4e5f"},
                "ok",
                "NVIDIA L40S, 45 GiB",
            ),
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


SANDBOX_ROOT = Path("/tmp/shipyard-tui")  # fixed, so that the screens read the same every run
SANDBOX_PORT = 28081  # fixed for the same reason; outside the ephemeral range free_port() uses
SANDBOX_NODE = "i-sandbox"
SANDBOX_IMAGE = "shipyard-test/python:3.11"  # the image the tests build (shipyard.testing)
SERVICES_FAIL = "Job for shipyard-controlplane.service failed because the control process exited"


@dataclass
class Sandbox:
    """The real install engine at work under a directory of its own, with systemd played by
    `installer.testing.FakeSystemdHost`: files, units, the migration, the services (run from
    their units' ExecStart=, the node on the real Docker engine), the health check, client.env
    and the check session are all real. `fail` and `hang` make systemctl verbs fail or hang.

    One sandbox at a time on a machine (`opened` holds a lock): its root and port are fixed."""

    root: Path = SANDBOX_ROOT
    port: int = SANDBOX_PORT
    fail: dict[str, str] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    verify_image: str = SANDBOX_IMAGE

    def __post_init__(self) -> None:
        self.host = FakeSystemdHost(self.root / "units", fail=self.fail, hang=self.hang)
        self.hanging = self.host.hanging = threading.Event()
        self.plans: list[Plan] = []
        self.events: list[Event] = []

    def answers(self) -> Plan:
        """What the choices start from: every path under the sandbox's root."""
        root = self.root
        return Plan(
            role="all-in-one",
            executable=root / "bin" / "shipyard",
            state_dir=root / "state",
            vfolder_root=root / "state" / "vfolders",
            config_dir=root / "etc",
            unit_dir=root / "units",
            port=self.port,
            node_id=SANDBOX_NODE,
            verify_image=self.verify_image,
            service_user="",  # this machine's users stay as they are (the e2e test makes one)
        )

    async def install(self, plan: Plan, on_event: OnEvent) -> Outcome:
        def emit(event: Event) -> None:
            self.events.append(event)
            on_event(event)

        self.plans.append(plan)
        async with self.host.serving():
            return await install(plan, emit, host=self.host, check_first=False)

    @contextmanager
    def opened(self) -> Iterator[Sandbox]:
        """Hold the machine's sandbox: an empty root before, nothing left after (files,
        services, the node's containers)."""
        lock = self.root.with_name(self.root.name + ".lock")
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            try:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root.mkdir(mode=0o755)
                yield self
            finally:
                _remove_containers(SANDBOX_NODE)
                shutil.rmtree(self.root, ignore_errors=True)


def _remove_containers(node_id: str) -> None:
    """The session containers the sandbox's node left (a check session that failed midway)."""
    import docker

    client = docker.from_env(timeout=60)
    try:
        found = client.api.containers(all=True, filters={"label": f"{LABEL_NODE}={node_id}"})
        for container in found:
            client.api.remove_container(container["Id"], force=True)
    finally:
        client.close()


def fake_app(
    *,
    report: Report | None = None,
    sandbox: Sandbox | None = None,
    database: FakeDatabase | None = None,
    detect_delay: float = 0.0,
    demo: bool = False,
) -> InstallerApp:
    """The installer app on a made-up machine (the real preflight); with a sandbox, Install
    runs the real engine in it (hold `sandbox.opened()` meanwhile)."""
    app = InstallerApp(
        detect=FakeDetect(report or demo_report(), delay=detect_delay),
        check_database=database or FakeDatabase(),
        install=sandbox.install if sandbox else _no_install,
        answers=sandbox.answers() if sandbox else None,
        demo=demo,
    )
    return app


async def _no_install(plan: Plan, on_event: OnEvent) -> Outcome:
    raise RuntimeError("this app has no sandbox to install into")


def demo_app(fail: bool = False) -> tuple[InstallerApp, Sandbox]:
    """What `--demo` runs: a made-up machine, and the real engine installing into the sandbox
    (`fail`: the services do not start, to see the rollback)."""
    sandbox = Sandbox(fail={"enable": SERVICES_FAIL} if fail else {})
    app = fake_app(
        sandbox=sandbox,
        database=FakeDatabase({"postgresql+asyncpg://shipyard:secret@127.0.0.1:5432/shipyard"}),
        detect_delay=1.0,
        demo=True,
    )
    return app, sandbox
