"""What the install engine and its steps share: the events it reports, the `Run` every step of
one install sees, and the `Step` base class. The engine (engine.py) runs steps; the steps
(_steps.py, _services.py, _removal.py, ...) build on this module, never on the engine, so the
dependency points one way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from installer._host import Host
from installer.plan import Plan
from installer.preflight import Problem

# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepStarted:
    step: str
    title: str = ""  # addition: what the step does, for a person


@dataclass(frozen=True)
class StepLog:
    step: str
    line: str


@dataclass(frozen=True)
class StepFinished:
    step: str
    changed: bool


@dataclass(frozen=True)
class StepFailed:
    step: str
    error: str
    fix: str = ""  # addition: what would help, when known


@dataclass(frozen=True)
class RollingBack:
    step: str


@dataclass(frozen=True)
class Finished:
    ok: bool
    summary: dict[str, Any]


Event = StepStarted | StepLog | StepFinished | StepFailed | RollingBack | Finished
OnEvent = Callable[[Event], None]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    summary: dict[str, Any]
    changed: tuple[str, ...] = ()  # the steps that changed something
    problems: tuple[Problem, ...] = ()  # preflight's findings
    error: str = ""
    fix: str = ""


# --- steps -----------------------------------------------------------------------------------


@dataclass
class Run:
    """What the steps of one install (or uninstall) share."""

    plan: Plan
    host: Host
    emit: OnEvent
    changed: set[str] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. endpoint, keys, versions
    after_rollback: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


class Step:
    """One thing the installer does. Subclasses set `name` and `title` and implement the
    three methods; `self.run` is set before any of them is called."""

    name: ClassVar[str]
    title: str = ""
    # a probe only looks: it always runs, changes nothing and has nothing to undo
    probe: ClassVar[bool] = False
    # a failed final check leaves a working installation in place (fix, then run again)
    rollback_on_failure: ClassVar[bool] = True
    run: Run

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    @property
    def host(self) -> Host:
        return self.run.host

    def log(self, line: str) -> None:
        for part in line.rstrip("\n").splitlines() or [""]:
            self.run.emit(StepLog(self.name, part))

    async def check(self) -> bool:
        """True when the system is already as this step would leave it."""
        return False

    async def apply(self) -> None:
        raise NotImplementedError

    async def undo(self) -> None:
        """Take back what `apply` did (also a partial apply); must not raise for what is
        already gone."""
