"""A booted systemd host for tests, with systemd-nspawn (docs/TESTBED.md): a Debian root from a
cached tarball (`./dev test` makes it), PID 1 systemd inside, commands run in it with nsenter."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BOOT_TIMEOUT = 60.0
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Machine:
    name: str
    root: Path  # the machine's / as seen from outside
    process: subprocess.Popen[bytes]
    leader: int  # systemd, PID 1 inside
    log: Path

    def run(
        self,
        *argv: str,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside (all of its namespaces), with a plain environment."""
        environ = {"PATH": INSIDE_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}
        environ.update(env or {})
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "env", "-i", *_pairs(environ), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def sh(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, timeout=timeout)

    def poweroff(self) -> None:
        """`systemctl poweroff` inside; if that does not end it within a minute, SIGKILL its
        systemd (the container's PID 1: the whole PID namespace goes with it)."""
        if self.process.poll() is not None:
            return
        self.run("systemctl", "poweroff", "--no-block", timeout=30)
        try:
            self.process.wait(timeout=60)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.leader, signal.SIGKILL)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()  # our own child, by pid
            self.process.wait(timeout=30)


def _pairs(environ: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in environ.items()]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


CGROUP_ROOT = Path("/sys/fs/cgroup")
HIERARCHIES = ("systemd", "unified")  # cgroup v1's named systemd hierarchy, and v2


def _cgroups(name: str) -> list[Path]:
    """A cgroup per machine to start nspawn in. With --keep-unit, nspawn puts the machine's
    `payload` and `supervisor` cgroups under its own: two machines started from one cgroup
    would share them, and each machine's systemd would manage the other's units."""
    return [
        CGROUP_ROOT / h / f"shipyard-test-{name}" for h in HIERARCHIES if (CGROUP_ROOT / h).is_dir()
    ]


def _cleanup_host(name: str) -> None:
    """What nspawn leaves behind here (docs/TESTBED.md): empty cgroups, its runtime dir."""
    for top in _cgroups(name):
        if not top.is_dir():
            continue
        deepest_first = sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        )
        for directory in [*deepest_first, top]:
            with contextlib.suppress(OSError):  # not empty: still in use, leave it
                directory.rmdir()
    runtime = Path("/run/systemd/nspawn")
    shutil.rmtree(runtime / "propagate" / name, ignore_errors=True)
    for directory in (runtime / "propagate", runtime / "locks", runtime):
        with contextlib.suppress(OSError):  # another machine still uses it
            directory.rmdir()


@contextmanager
def booted(
    rootfs_tar: Path, name: str, binds: Sequence[str] = (), network_of: Machine | None = None
) -> Iterator[Machine]:
    """Unpack `rootfs_tar`, boot it as machine `name` with `binds` (--bind=...), yield it once
    systemd says it is up; power it off and remove it afterwards. Its network is private, or
    that of the machine `network_of` (the two then reach each other on 127.0.0.1)."""
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/var/tmp"))
    log = root.with_suffix(".log")
    process = None
    try:
        subprocess.run(["tar", "-C", str(root), "-xf", str(rootfs_tar)], check=True)
        (root / "etc" / "hostname").unlink(missing_ok=True)  # so the hostname is `name`
        network = (
            f"--network-namespace-path=/proc/{network_of.leader}/ns/net"
            if network_of is not None
            else "--private-network"
        )
        argv = [
            *("systemd-nspawn", "-D", str(root), "--boot", "--register=no", "--keep-unit"),
            *(network, "--console=passive", "-M", name),
            *(f"--bind={b}" for b in binds),
        ]
        enter = ""
        for cgroup in _cgroups(name):
            cgroup.mkdir(exist_ok=True)
            enter += f"echo $$ >{cgroup}/cgroup.procs && "
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["sh", "-c", f'{enter}exec "$@"', "sh", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        machine = Machine(name, root, process, _wait_for_leader(process, log), log)
        _wait_until_up(machine)
        yield machine
    finally:
        if process is not None and process.poll() is None:
            leader = _systemd_child(process.pid)
            if leader is not None:
                Machine(name, root, process, leader, log).poweroff()
            else:
                process.kill()
                process.wait(timeout=30)
        _cleanup_host(name)
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)
        log.unlink(missing_ok=True)


def _wait_until_up(machine: Machine) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        # "Failed to connect to bus" until systemd has made its socket, then "starting"
        result = machine.run("systemctl", "is-system-running", timeout=10)
        state = (result.stdout + result.stderr).strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{machine.name} did not boot within {BOOT_TIMEOUT:.0f} s: {state}")


def _systemd_child(pid: int) -> int | None:
    for child in _children(pid):  # nspawn's helper comes first, then systemd
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                return child
        except OSError:
            pass
    return None


def _wait_for_leader(process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {process.returncode}:\n{log.read_text()}")
        leader = _systemd_child(process.pid)
        if leader is not None:
            return leader
        time.sleep(0.05)
    raise AssertionError(f"no systemd inside after {BOOT_TIMEOUT:.0f} s:\n{log.read_text()}")


def available() -> str | None:
    """Why a booted host cannot be had here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("systemd-nspawn", "nsenter", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install systemd-container; ./dev test does)"
    return None
