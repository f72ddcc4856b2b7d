"""The install engine (trio): detect → preflight → steps, with rollback; and uninstall.

Each step knows whether it is already done (`check`), how to do it (`apply`) and how to take it
back (`undo`). Steps run in stages; the steps of one stage do not depend on each other and run
at once in a nursery, but their events come out one step after the other, in plan order (a
step's events wait until the steps before it in its stage are over), so the log reads the same
every time. When a step fails, every step that started is undone in reverse plan order,
shielded from cancellation (Ctrl-C included). Running the install again finds every step done
and changes nothing; running a newer executable's install upgrades in place.

Progress goes to `on_event` as plain dataclasses (see `Event`); the TUI posts them to its
screens from its worker thread, headless mode prints them.

    outcome = trio.run(install, plan, print)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from hostlib import __version__
from installer import _steps
from installer._host import Host, SystemHost
from installer._step import (
    Event,
    Finished,
    OnEvent,
    Outcome,
    RollingBack,
    Run,
    Step,
    StepFailed,
    StepFinished,
    StepLog,
    StepStarted,
)
from installer.errors import InstallerError, PlanError, StepError
from installer.plan import Plan
from installer.preflight import Problem, preflight

__all__ = [
    "Event",
    "Finished",
    "OnEvent",
    "Outcome",
    "RollingBack",
    "Run",
    "Step",
    "StepFailed",
    "StepFinished",
    "StepLog",
    "StepStarted",
    "describe",
    "install",
    "install_executable",
    "uninstall",
]


@dataclass
class _Failure:
    step: Step
    error: str
    fix: str


class _Ordered:
    """The events of one stage's steps, passed on one step after the other: a step's events are
    held back until every step before it in the stage is over."""

    def __init__(self, steps: list[Step], emit: OnEvent) -> None:
        self._emit = emit
        self._held: list[list[Event]] = [[] for _ in steps]
        self._over = [False] * len(steps)
        self._current = 0  # the step whose events pass at once

    def emitter(self, index: int) -> OnEvent:
        def emit(event: Event) -> None:
            if index == self._current:
                self._emit(event)
            else:
                self._held[index].append(event)

        return emit

    def over(self, index: int) -> None:
        self._over[index] = True
        while self._current < len(self._over) and self._over[self._current]:
            self._current += 1
            self.flush(upto=self._current)

    def flush(self, upto: int | None = None) -> None:
        """Pass on what is held for the steps up to `upto` (all of them: the stage is over)."""
        for held in self._held[: len(self._held) if upto is None else upto + 1]:
            for event in held:
                self._emit(event)
            held.clear()


class _Runner:
    def __init__(self, run: Run, stages: list[list[Step]]) -> None:
        self.run = run
        self.emit = run.emit
        self.order = {id(step): n for n, step in enumerate(s for stage in stages for s in stage)}
        self.started: list[Step] = []  # steps that may have changed something
        self.failures: list[_Failure] = []

    async def stage(self, steps: list[Step]) -> None:
        ordered = _Ordered(steps, self.emit)
        try:
            async with trio.open_nursery() as nursery:
                for index, step in enumerate(steps):
                    nursery.start_soon(self._one, step, ordered, index)
        finally:
            ordered.flush()  # cancelled: what was said so far comes out before the rollback

    async def _one(self, step: Step, ordered: _Ordered, index: int) -> None:
        emit = ordered.emitter(index)
        step.run = dataclasses.replace(self.run, emit=emit)
        try:
            await self._apply(step, emit)
        finally:
            ordered.over(index)

    async def _apply(self, step: Step, emit: OnEvent) -> None:
        emit(StepStarted(step.name, step.title))
        try:
            if not step.probe:
                if await step.check():
                    step.log("already done")
                    emit(StepFinished(step.name, False))
                    return
                self.started.append(step)
            await step.apply()
        except StepError as exc:
            self._fail(step, str(exc), exc.fix, emit)
            return
        except (OSError, InstallerError) as exc:
            self._fail(step, str(exc), "", emit)
            return
        except Exception as exc:  # a bug: still roll back, and say what it was
            self._fail(step, f"unexpected error: {exc!r}", "", emit)
            return
        if not step.probe:
            self.run.changed.add(step.name)
        emit(StepFinished(step.name, not step.probe))

    def _fail(self, step: Step, error: str, fix: str, emit: OnEvent) -> None:
        self.failures.append(_Failure(step, error, fix))
        emit(StepFailed(step.name, error, fix))

    async def rollback(self) -> None:
        with trio.CancelScope(shield=True):
            for step in sorted(self.started, key=lambda s: self.order[id(s)], reverse=True):
                step.run = self.run  # its events pass at once now
                self.emit(RollingBack(step.name))
                try:
                    await step.undo()
                except Exception as exc:
                    step.log(f"could not undo: {exc}")
            for restore in self.run.after_rollback:
                try:
                    await restore()
                except Exception as exc:
                    self.emit(StepLog("rollback", f"could not restore: {exc}"))

    async def execute(self, stages: list[list[Step]]) -> _Failure | None:
        """Run the stages; on the first failed stage roll back (unless only steps that ask
        not to be rolled back failed). The failure, or None."""
        try:
            for steps in stages:
                await self.stage(steps)
                if self.failures:
                    if any(f.step.rollback_on_failure for f in self.failures):
                        await self.rollback()
                    return self.failures[0]
        except BaseException:  # cancelled (Ctrl-C): leave nothing half done
            await self.rollback()
            raise
        return None


# --- install ---------------------------------------------------------------------------------


async def install(
    plan: Plan,
    on_event: OnEvent,
    *,
    host: Host | None = None,
    check_first: bool = True,
) -> Outcome:
    """Install (or upgrade, or repair) what `plan` describes. `check_first=False` skips
    detection and preflight (tests on a machine without systemd, with a host double)."""
    run = Run(plan, host or SystemHost(), on_event)
    problems: tuple[Problem, ...] = ()
    if check_first:
        problems = tuple(await _preflight(run))
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            summary: dict[str, Any] = {
                "role": plan.role,
                "problems": [p.__dict__ for p in problems],
                "error": errors[0].message,
                "fix": errors[0].fix,
            }
            on_event(Finished(False, summary))
            return Outcome(False, summary, (), problems, errors[0].message, errors[0].fix)
    stages = _steps.install_stages(plan)
    runner = _Runner(run, stages)
    failure = await runner.execute(stages)
    summary = _steps.summary(run)
    if failure is not None:
        summary |= {"failed_step": failure.step.name, "error": failure.error, "fix": failure.fix}
        summary["rolled_back"] = failure.step.rollback_on_failure
    on_event(Finished(failure is None, summary))
    return Outcome(
        failure is None,
        summary,
        tuple(sorted(run.changed)),
        problems,
        failure.error if failure else "",
        failure.fix if failure else "",
    )


async def install_executable(plan: Plan, on_event: OnEvent, *, host: Host | None = None) -> Outcome:
    """Only plan.executable (`shipyard install --executable PATH`), for a machine that runs no
    services of its own but uses the command: no detection, no preflight, no root needed."""
    run = Run(plan, host or SystemHost(), on_event)
    step = _steps.executable_step(plan)
    failure = await _Runner(run, [[step]]).execute([[step]])
    summary = {"executable": str(plan.executable), "version": __version__}
    if failure is not None:
        summary |= {"error": failure.error, "fix": failure.fix}
    on_event(Finished(failure is None, summary))
    return Outcome(
        failure is None,
        summary,
        tuple(sorted(run.changed)),
        error=failure.error if failure else "",
        fix=failure.fix if failure else "",
    )


async def _preflight(run: Run) -> list[Problem]:
    from installer.detect import detect

    name = "preflight"
    run.emit(StepStarted(name, "Check this machine against the plan"))
    plan = run.plan
    report = await detect(
        config_dir=plan.config_dir, unit_dir=plan.unit_dir, executable=plan.executable
    )
    problems = preflight(report, plan)
    for problem in problems:
        run.emit(StepLog(name, f"{problem.severity}: {problem.message} (fix: {problem.fix})"))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        run.emit(StepFailed(name, errors[0].message, errors[0].fix))
    else:
        run.emit(StepLog(name, "no problems" if not problems else "warnings only; going on"))
        run.emit(StepFinished(name, False))
    return problems


def describe(plan: Plan) -> list[tuple[str, str]]:
    """(name, title) of every step `install(plan)` runs, in order (addition, for the TUI)."""
    return [(s.name, s.title) for stage in _steps.install_stages(plan) for s in stage]


# --- uninstall -------------------------------------------------------------------------------


async def uninstall(
    config_dir: Path,
    purge: bool,
    on_event: OnEvent,
    *,
    host: Host | None = None,
    plan: Plan | None = None,
) -> Outcome:
    """Stop and remove the services, their units, configuration and executable, and the node's
    session containers. The state directory (database, keys) stays unless `purge`.

    What is where comes from `plan`, else from the install record in `config_dir`, else from
    the defaults."""
    try:
        plan = plan or _steps.installed_plan(config_dir)
    except PlanError as exc:
        on_event(Finished(False, {"error": str(exc)}))
        return Outcome(False, {"error": str(exc)}, error=str(exc))
    run = Run(plan, host or SystemHost(), on_event)
    steps = _steps.uninstall_steps(plan, purge)
    runner = _Runner(run, [steps])
    for step in steps:
        await runner.stage([step])  # in order, and on past a failure: remove what we can
    ok = not runner.failures
    summary: dict[str, Any] = {
        "removed": sorted(run.changed),
        "kept": [] if purge else [str(plan.state_dir)],
    }
    if runner.failures:
        first = runner.failures[0]
        summary |= {"failed_step": first.step.name, "error": first.error, "fix": first.fix}
    on_event(Finished(ok, summary))
    first_failure = runner.failures[0] if runner.failures else None
    return Outcome(
        ok,
        summary,
        tuple(sorted(run.changed)),
        error=first_failure.error if first_failure else "",
        fix=first_failure.fix if first_failure else "",
    )
