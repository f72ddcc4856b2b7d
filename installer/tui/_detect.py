"""Step 2: what this machine has, and what stands in the way of installing on it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, LoadingIndicator, Static

from installer.detect import Report
from installer.plan import Plan
from installer.preflight import Problem
from installer.tui._trio_call import CallCancelled, TrioCall
from installer.tui._widgets import FindingRow, ProblemRow

Detect = Callable[[], Awaitable[Report]]
Preflight = Callable[[Report, Plan | None], list[Problem]]

TITLES = {
    "system": "System",
    "engine": "Container engine",
    "init": "Init system",
    "accelerators": "Accelerators",
    "storage": "Storage",
    "database": "Database",
    "installation": "Existing installation",
}
# errors a choice on the next screen can clear: asking the installer to install the engine
_FIXABLE_WITH = Plan(role="all-in-one", install_engine=True)


def blocking_errors(report: Report, problems: list[Problem], preflight: Preflight) -> list[Problem]:
    """The errors no choice on the next screen can fix (not root, no systemd, too little
    memory). A missing engine is not one of them: the plan can say to install it."""
    remaining = {p.message for p in preflight(report, _FIXABLE_WITH) if p.severity == "error"}
    return [p for p in problems if p.severity == "error" and p.message in remaining]


class DetectScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+n", "next", "Next"),
        Binding("ctrl+p", "back", "Back"),
        Binding("ctrl+r", "redetect", "Detect again"),
    ]

    class Detected(Message):
        """Posted by the worker thread with the finished report."""

        def __init__(self, call: TrioCall, report: Report) -> None:
            super().__init__()
            self.call = call
            self.report = report

    class DetectFailed(Message):
        def __init__(self, call: TrioCall, error: str) -> None:
            super().__init__()
            self.call = call
            self.error = error

    class Accepted(Message):
        """The user goes on with this report: the app moves on to the choices."""

        def __init__(self, report: Report) -> None:
            super().__init__()
            self.report = report

    def __init__(self, detect: Detect, preflight: Preflight) -> None:
        super().__init__()
        self._detect = detect
        self._preflight = preflight
        self._call: TrioCall | None = None
        self.report: Report | None = None
        self.problems: list[Problem] = []
        self.blocking: list[Problem] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(classes="body", id="report"):
            yield Static("Looking at this machine (read-only)…", id="detect-status")
            yield LoadingIndicator()
        with Horizontal(classes="buttons"):
            yield Button("Back", id="back")
            yield Button("Detect again", id="redetect")
            yield Button("Next", id="next", variant="primary", disabled=True)
        yield Footer()

    async def on_mount(self) -> None:
        await self.action_redetect()

    def on_unmount(self) -> None:
        if self._call is not None:
            self._call.cancel()

    # --- the worker ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="detect", exit_on_error=False)
    def _run_detect(self, call: TrioCall) -> None:
        try:
            report = call.run(self._detect)
        except CallCancelled:
            return
        except Exception as exc:  # shown to the user, who can try again
            self.post_message(self.DetectFailed(call, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Detected(call, report))

    # --- messages from the worker ------------------------------------------------------

    async def on_detect_screen_detected(self, message: DetectScreen.Detected) -> None:
        message.stop()
        if message.call is not self._call:
            return  # from a detection the user restarted
        self.report = message.report
        self.problems = self._preflight(message.report, None)
        self.blocking = blocking_errors(message.report, self.problems, self._preflight)
        body = self.query_one("#report", VerticalScroll)
        await body.remove_children()
        await body.mount_all(self._report_widgets())
        body.scroll_home(animate=False)
        self._set_ready()

    async def on_detect_screen_detect_failed(self, message: DetectScreen.DetectFailed) -> None:
        message.stop()
        if message.call is not self._call:
            return
        body = self.query_one("#report", VerticalScroll)
        await body.remove_children()
        await body.mount(
            Static(
                f"Detection failed: {message.error}\nPress Ctrl+R to try again.",
                classes="verdict -error",
                markup=False,
            )
        )
        self._set_ready()

    def _report_widgets(self) -> list[Static | Horizontal]:
        assert self.report is not None
        widgets: list[Static | Horizontal] = []
        if self.blocking:
            count = len(self.blocking)
            verdict = (
                f"{count} problem{'s' if count > 1 else ''} must be fixed before installing"
                " here (see the fixes below), then press Ctrl+R to detect again."
            )
            widgets.append(Static(verdict, classes="verdict -error", id="verdict"))
        elif self.problems:
            widgets.append(
                Static(
                    "Ready to go on; mind the notes below.",
                    classes="verdict -warning",
                    id="verdict",
                )
            )
        else:
            widgets.append(
                Static("This machine is ready for Shipyard.", classes="verdict -ok", id="verdict")
            )
        if self.problems:
            widgets.append(Static("Before installing", classes="section-title"))
            blocking = {id(p) for p in self.blocking}
            for problem in self.problems:
                note = ""
                if problem.severity == "error" and id(problem) not in blocking:
                    note = "(the next screen can take care of this)"
                widgets.append(ProblemRow(problem, note))
        for section, findings in self.report.sections().items():
            if not findings:
                continue
            widgets.append(Static(TITLES.get(section, section.title()), classes="section-title"))
            widgets.extend(FindingRow(f) for f in findings)
        return widgets

    def _set_ready(self) -> None:
        self.query_one("#next", Button).disabled = not self._can_go_on()
        self.query_one("#next" if self._can_go_on() else "#redetect", Button).focus()
        self.refresh_bindings()

    def _can_go_on(self) -> bool:
        return self.report is not None and not self.blocking

    # --- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next":
            return self._can_go_on() or None  # None: shown, greyed out
        return True

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        match event.button.id:
            case "next":
                self.action_next()
            case "back":
                self.action_back()
            case "redetect":
                await self.action_redetect()

    def action_next(self) -> None:
        if self.report is not None and self._can_go_on():
            self.post_message(self.Accepted(self.report))

    def action_back(self) -> None:
        self.dismiss()

    async def action_redetect(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self.report = None
        self.problems = self.blocking = []
        self.query_one("#next", Button).disabled = True
        self.refresh_bindings()
        body = self.query_one("#report", VerticalScroll)
        if not body.query(LoadingIndicator):
            await body.remove_children()
            await body.mount_all(
                [
                    Static("Looking at this machine (read-only)…", id="detect-status"),
                    LoadingIndicator(),
                ]
            )
        self._call = TrioCall()
        self._run_detect(self._call)
