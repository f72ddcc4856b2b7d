"""A stand-in for systemd and the container engine, for engine tests on machines where PID 1
is not systemd. It keeps each unit's enabled/active state the way `systemctl` reports it and can
be told to fail a verb; every other command runs for real. Real systemd is exercised by
tests/installer/test_systemd_e2e.py."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from installer._host import COMMAND_TIMEOUT, SystemHost
from installer.errors import CommandFailed


@dataclass
class FakeUnit:
    enabled: bool = False
    active: bool = False
    invocation: str = ""


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
            return 0, ""
        return await SystemHost().run(argv, time_limit=time_limit, env=env, check=check)

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
            if verb in ("start", "restart") or (verb == "enable" and "--now" in args):
                unit.active = True
                unit.invocation = uuid.uuid4().hex
            if verb == "stop" or (verb == "disable" and "--now" in args):
                unit.active = False
        if verb == "show":
            unit = self.units.get(names[0], FakeUnit())
            return 0, (
                f"UnitFileState={'enabled' if unit.enabled else 'disabled'}\n"
                f"ActiveState={'active' if unit.active else 'inactive'}\n"
                f"SubState={'running' if unit.active else 'dead'}\n"
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
