"""Step 5: the engine at work. It runs under `trio.run` in a thread worker; every engine event
comes back to this screen as a `Progress` message, so the UI only ever changes on its own
thread ("attributes down, messages up")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, RichLog, Static

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
)
from installer.plan import Plan
from installer.tui._trio_call import CallCancelled, TrioCall

Install = Callable[[Plan, OnEvent], Awaitable[Outcome]]
Describe = Callable[[Plan], list[tuple[str, str]]]
StepState = Literal["pending", "running", "done", "unchanged", "failed", "undoing", "undone"]
Status = Literal["installed", "failed", "cancelled"]

MARKS: dict[StepState, str] = {
    "pending": "[dim]·[/]",
    "running": "[$accent]▶[/]",
    "done": "[$success]✔[/]",
    "unchanged": "[$success 60%]=[/]",
    "failed": "[$error]✖[/]",
    "undoing": "[$warning]↶[/]",
    "undone": "[$warning 70%]↶[/]",
}
LEGEND = (
    "[$success]✔[/] done  [$success 60%]=[/] unchanged\n[$error]✖[/] failed  [$warning]↶[/] undone"
)


@dataclass
class ApplyResult:
    """How the install ended, for the result screen."""

    status: Status
    summary: dict[str, Any] = field(default_factory=dict)
    failed_step: str = ""
    error: str = ""
    fix: str = ""
    rolled_back: list[str] = field(default_factory=list)
    log: list[Text] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"installed": 0, "failed": 1, "cancelled": 130}[self.status]


class StepList(Widget):
    """The steps of the install, each with a mark for how far it got."""

    steps: reactive[dict[str, StepState]] = reactive(dict, always_update=True)

    def plan(self, names: list[str]) -> None:
        self.steps = dict.fromkeys(names, "pending")

    def set_state(self, step: str, state: StepState) -> None:
        steps = dict(self.steps)
        if step not in steps:  # a step describe() did not list (preflight): before the rest
            names = list(steps)
            at = next((i for i, n in enumerate(names) if steps[n] == "pending"), len(names))
            names.insert(at, step)
            steps = {n: steps.get(n, state) for n in names}
        steps[step] = state
        self.steps = steps

    def state(self, step: str) -> StepState | None:
        return self.steps.get(step)

    def render(self) -> Content:
        lines = [f"{MARKS[state]} {Content(name).markup}" for name, state in self.steps.items()]
        return Content.from_markup("\n".join([*lines, "", LEGEND]))


class ApplyScreen(Screen[None]):
    """No bindings of its own: Escape/Ctrl+C (the app's) ask whether to stop."""

    class Progress(Message):
        """One engine event, posted from the worker thread."""

        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    class EngineReturned(Message):
        """The engine's `install` returned (outcome), was cancelled, or crashed (error)."""

        def __init__(self, outcome: Outcome | None, cancelled: bool, error: str) -> None:
            super().__init__()
            self.outcome = outcome
            self.cancelled = cancelled
            self.error = error

    class Ended(Message):
        """The install is over, one way or the other: the app shows the result."""

        def __init__(self, result: ApplyResult) -> None:
            super().__init__()
            self.result = result

    def __init__(self, plan: Plan, install: Install, describe: Describe) -> None:
        super().__init__()
        self.plan = plan
        self._install = install
        self._describe = describe
        self._call = TrioCall()
        self.stopping = False
        self.finished = False
        self._result = ApplyResult("failed")

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="apply-body"):
            yield StepList(id="steps")
            yield RichLog(id="engine-log", wrap=True, markup=False, min_width=20)
        yield Static("Installing… Esc stops the install and undoes what it did.", id="apply-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#steps").border_title = "Steps"
        self.query_one("#engine-log").border_title = "Log"
        self.query_one(StepList).plan([name for name, _title in self._describe(self.plan)])
        self._run_engine(self._call)

    def on_unmount(self) -> None:
        self._call.cancel()  # the app is closing: never leave the engine running behind it

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def _run_engine(self, call: TrioCall) -> None:
        def on_event(event: Event) -> None:
            self.post_message(self.Progress(event))

        try:
            outcome = call.run(lambda: self._install(self.plan, on_event))
        except CallCancelled:
            self.post_message(self.EngineReturned(None, True, ""))
        except Exception as exc:  # a bug in the engine: the result screen says so
            self.post_message(self.EngineReturned(None, False, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.EngineReturned(outcome, call.cancel_requested, ""))

    # --- asked by the app ------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel the engine; it undoes the steps it did (RollingBack events) and returns."""
        if self.finished or self.stopping:
            return
        self.stopping = True
        self.query_one("#apply-status", Static).update(
            "Stopping: undoing the steps done so far… (this can take a moment)"
        )
        self._call.cancel()

    # --- engine events ---------------------------------------------------------------------

    def on_apply_screen_progress(self, message: ApplyScreen.Progress) -> None:
        message.stop()
        steps = self.query_one(StepList)
        result = self._result
        match message.event:
            case StepStarted(step=step, title=title):
                steps.set_state(step, "running")
                self._log("▶", f"{step}: {title}" if title else step, "bold")
            case StepLog(step=step, line=line):
                self._log(" ", f"{step}: {line}", "")
            case StepFinished(step=step, changed=changed):
                steps.set_state(step, "done" if changed else "unchanged")
                self._log("✔", f"{step}: {'done' if changed else 'already as planned'}", "green")
            case StepFailed(step=step, error=error, fix=fix):
                steps.set_state(step, "failed")
                if not result.failed_step:
                    result.failed_step, result.error, result.fix = step, error, fix
                self._log("✖", f"{step}: {error}", "red")
                if fix:
                    self._log(" ", f"fix: {fix}", "yellow")
            case RollingBack(step=step):
                self._settle_undo(steps)
                if steps.state(step) != "failed":  # the failed step keeps its ✖
                    steps.set_state(step, "undoing")
                result.rolled_back.append(step)
                self._log("↶", f"undo {step}", "yellow")
            case Finished(ok=ok, summary=summary):
                self._settle_undo(steps)
                result.summary = summary
                self._log("■", "installed" if ok else "failed", "green" if ok else "red")

    def on_apply_screen_engine_returned(self, message: ApplyScreen.EngineReturned) -> None:
        message.stop()
        self.finished = True
        result = self._result
        self._settle_undo(self.query_one(StepList))
        if message.outcome is not None:
            outcome = message.outcome
            result.summary = result.summary or dict(outcome.summary)
            result.error = result.error or outcome.error or str(outcome.summary.get("error", ""))
            result.fix = result.fix or outcome.fix or str(outcome.summary.get("fix", ""))
            result.failed_step = result.failed_step or str(outcome.summary.get("failed_step", ""))
        if message.outcome is not None and message.outcome.ok:
            result.status = "installed"
        elif message.cancelled:
            result.status = "cancelled"
        else:
            result.status = "failed"
            if message.error:
                result.error = result.error or f"the installer crashed: {message.error}"
        self.query_one("#apply-status", Static).update(
            {
                "installed": "Installed.",
                "failed": "The install failed.",
                "cancelled": "Stopped.",
            }[result.status]
        )
        self.post_message(self.Ended(result))

    def _settle_undo(self, steps: StepList) -> None:
        for name, state in steps.steps.items():
            if state == "undoing":
                steps.set_state(name, "undone")

    def _log(self, mark: str, text: str, style: str) -> None:
        line = Text.assemble((f"{mark} ", style or "dim"), (text, style))
        self._result.log.append(line)
        self.query_one(RichLog).write(line)
