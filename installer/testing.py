"""A stand-in for systemd, for running the install engine on machines where PID 1 is not
systemd (tests, the TUI's snapshots and demo). Real systemd is exercised by
tests/installer/test_systemd_e2e.py.

`FakeSystemdHost` keeps each unit's enabled/active state the way `systemctl` reports it and can
be told to fail or hang a verb. Inside `async with host.serving():` starting a unit runs it for
real: the command of its unit file's `ExecStart=` (with its `Environment=`) as a child process,
whose output is the unit's journal (`journalctl -u`), and whose exit makes the unit `failed`.
Outside it, units only change state (for tests that never reach a running service).

Every other command runs for real, except one thing answered in this process through the
function the command itself calls: `shipyard controlplane migrate` of the installed executable
(`controlplane.cli.migrate`), because starting a Python that imports SQLAlchemy and Alembic
twice per install costs several seconds each on a loaded machine, and the TUI tests install
often. The installed executable is a wrapper for this very checkout (see
`installer._steps.Executable`), so it is the same code either way.

The container engine answers from a dictionary (`containers`), for the uninstall tests; the
node that a running shipyard-node.service starts uses the real Docker engine.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from installer._host import COMMAND_TIMEOUT, SystemHost, command_environ
from installer.errors import CommandFailed

STOP_TIMEOUT = 30.0  # as TimeoutStopSec= in the units
JOURNAL_LINES = 200


@dataclass
class FakeUnit:
    enabled: bool = False
    active: bool = False
    failed: bool = False
    invocation: str = ""
    journal: deque[str] = field(default_factory=lambda: deque(maxlen=JOURNAL_LINES))
    process: trio.Process | None = None
    stopped: trio.Event = field(default_factory=trio.Event)


def unit_command(path: Path) -> tuple[list[str], dict[str, str]]:
    """The argv of a unit file's ExecStart= and the variables of its Environment= lines."""
    argv: list[str] = []
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "ExecStart":
            # the units' quoting (installer.units.exec_quote) is a subset of the shell's
            argv = [word.replace("$$", "$").replace("%%", "%") for word in shlex.split(value)]
        elif key == "Environment":
            for word in shlex.split(value):
                name, _, setting = word.partition("=")
                env[name] = setting
    if not argv:
        raise ValueError(f"{path} has no ExecStart=")
    return argv, env


@dataclass
class FakeSystemdHost:
    unit_dir: Path
    # systemctl verb -> error output: that verb fails (e.g. {"enable": "Access denied"})
    fail: dict[str, str] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)  # verbs that never return (until cancelled)
    engine: bool = True
    containers: dict[str, list[str]] = field(default_factory=dict)  # node id -> container ids
    units: dict[str, FakeUnit] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    hanging: threading.Event | None = None  # set when a verb in `hang` was reached
    _nursery: trio.Nursery | None = None

    # --- running units -------------------------------------------------------------------------

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """While open, started units run their ExecStart=; on the way out they are stopped."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    yield
                finally:
                    with trio.CancelScope(shield=True):
                        # last started, first stopped: the node before the control plane, as
                        # systemd orders them (the node's unit is After= the control plane's)
                        for name in reversed(list(self.units)):
                            await self._stop(name)
        finally:
            self._nursery = None

    async def _start(self, name: str) -> None:
        unit = self.units[name]
        unit.active, unit.failed = True, False
        unit.invocation = uuid.uuid4().hex
        if self._nursery is None or unit.process is not None:
            return
        argv, env = unit_command(self.unit_dir / name)
        unit.stopped = trio.Event()
        unit.process = await self._nursery.start(self._supervise, name, argv, env)

    async def _supervise(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        task_status: trio.TaskStatus[trio.Process | None],
    ) -> None:
        unit = self.units[name]
        try:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=command_environ(env),
            )
        except OSError as exc:
            unit.active, unit.failed = False, True
            unit.journal.append(f"Failed to execute {argv[0]}: {exc}")
            unit.stopped.set()
            task_status.started(None)
            return
        task_status.started(process)
        assert process.stdout is not None
        try:
            pending = b""
            async for chunk in process.stdout:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                unit.journal.extend(line.decode(errors="replace") for line in lines)
            code = await process.wait()
            if unit.process is process and unit.active:  # it ended by itself
                unit.active, unit.failed = False, code != 0
                unit.journal.append(f"{name}: Main process exited, status={code}")
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await process.stdout.aclose()
            unit.process = None
            unit.stopped.set()

    async def _stop(self, name: str) -> None:
        unit = self.units[name]
        unit.active = False
        process = unit.process
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            await unit.stopped.wait()
            return
        process.kill()
        await unit.stopped.wait()

    # --- the Host protocol -----------------------------------------------------------------------

    async def run(
        self,
        argv: Sequence[str],
        *,
        time_limit: float = COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> tuple[int, str]:
        if argv[0] == "systemctl":
            return await self.systemctl(*argv[1:], check=check)
        if argv[0] == "journalctl":
            self.calls.append(list(argv))
            return 0, self._journal(list(argv[1:]))
        if list(argv[1:3]) == ["controlplane", "migrate"]:
            return await self._migrate(list(argv), check)
        return await SystemHost().run(argv, time_limit=time_limit, env=env, check=check)

    def _journal(self, args: list[str]) -> str:
        names = [args[i + 1] for i, arg in enumerate(args) if arg == "-u"]
        count = int(args[args.index("-n") + 1]) if "-n" in args else JOURNAL_LINES
        lines = [line for n in names for line in self.units.get(n, FakeUnit()).journal]
        return "".join(f"{line}\n" for line in lines[-count:])

    async def _migrate(self, argv: list[str], check: bool) -> tuple[int, str]:
        from controlplane.cli import migrate, migrate_command

        context = migrate_command.make_context("migrate", argv[3:])
        params = context.params
        code, said = await trio.to_thread.run_sync(migrate, params["config_path"], params["check"])
        output = f"Error: {said}\n" if code == 2 else f"{said}\n"
        code = min(code, 1)  # a ClickException exits with 1
        if check and code != 0:
            raise CommandFailed(argv, code, output)
        return code, output

    async def systemctl(self, *args: str, check: bool = True) -> tuple[int, str]:
        self.calls.append(["systemctl", *args])
        verb = args[0]
        names, rest = [], list(args[1:])
        while rest:
            arg = rest.pop(0)
            if arg == "-p":
                rest.pop(0)  # the property's name
            elif not arg.startswith("-"):
                names.append(arg)
        if verb in self.fail:
            return self._failed(list(args), self.fail[verb], check)
        if verb in self.hang:
            if self.hanging is not None:
                self.hanging.set()
            await trio.sleep_forever()
        if verb in ("enable", "start", "restart") or (verb == "disable" and "--now" in args):
            missing = [n for n in names if not (self.unit_dir / n).exists()]
            if missing:
                return self._failed(list(args), f"Unit {missing[0]} not found.", check)
        for name in names if verb != "show" else []:
            unit = self.units.setdefault(name, FakeUnit())
            if verb == "enable":
                unit.enabled = True
            if verb == "disable":
                unit.enabled = False
            if verb in ("stop", "restart") or (verb == "disable" and "--now" in args):
                await self._stop(name)
            if verb in ("start", "restart") or (verb == "enable" and "--now" in args):
                await self._start(name)
            if verb == "reset-failed":
                unit.failed = False
        if verb == "show":
            unit = self.units.get(names[0], FakeUnit())
            state = "active" if unit.active else "failed" if unit.failed else "inactive"
            return 0, (
                f"UnitFileState={'enabled' if unit.enabled else 'disabled'}\n"
                f"ActiveState={state}\n"
                f"SubState={'running' if unit.active else 'failed' if unit.failed else 'dead'}\n"
                f"InvocationID={unit.invocation}\n"
            )
        if verb == "is-active":
            active = all(self.units.get(n, FakeUnit()).active for n in names)
            return (0, "active\n") if active else (3, "inactive\n")
        return 0, ""

    def _failed(self, args: list[str], output: str, check: bool) -> tuple[int, str]:
        if check:
            raise CommandFailed(["systemctl", *args], 1, output)
        return 1, output

    async def engine_answers(self) -> bool:
        return self.engine

    async def session_containers(self, node_id: str) -> list[str]:
        return list(self.containers.get(node_id, []))

    async def remove_container(self, container_id: str) -> None:
        for ids in self.containers.values():
            if container_id in ids:
                ids.remove(container_id)
