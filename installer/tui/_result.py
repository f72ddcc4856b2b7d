"""Step 6: how it ended. Installed: where to reach it and what to do next. Otherwise: what
failed, how to fix it, and what was undone."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Label, RichLog, Static

from installer.tui._apply import ApplyResult


def next_steps(summary: dict[str, Any]) -> list[str]:
    given = summary.get("next_steps")
    if isinstance(given, list) and given:
        return [str(step) for step in given]
    endpoint = summary.get("endpoint", "")
    if summary.get("role") == "node":
        return [
            f"This node ({summary.get('node_id', '')}) now takes sessions from {endpoint}.",
            "See it there: shipyard image ls lists its images under NODES (with the admin's"
            " client settings).",
        ]
    client_env = summary.get("client_env", "/etc/shipyard/client.env")
    return [
        f"Open the web UI at {endpoint}/ui/ and sign in with the admin's access and secret key"
        f" (in {client_env})",
        f"Use the admin's settings (they hold the secret key): source {client_env}",
        "Run something: shipyard run -c 'print(6*7)'",
        f"Scripts and the official backend.ai client use the API at {endpoint}",
        "Add machines: shipyard node token create, then shipyard install on each one.",
    ]


class LogScreen(ModalScreen[None]):
    """The whole install log, over the result."""

    BINDINGS = [Binding("escape,q,l", "close", "Close")]

    def __init__(self, result: ApplyResult) -> None:
        super().__init__()
        self._result = result

    def compose(self) -> ComposeResult:
        log = RichLog(id="full-log", wrap=True, markup=False)
        log.border_title = "Install log (Esc closes)"
        yield log
        yield Footer()

    def on_mount(self) -> None:
        log = self.query_one(RichLog)
        for line in self._result.log:
            log.write(line)

    def action_close(self) -> None:
        self.dismiss()


class ResultScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,ctrl+n", "exit", "Exit"),
        Binding("l", "show_log", "Show log"),
    ]

    def __init__(self, result: ApplyResult) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        result = self.result
        yield Header()
        with VerticalScroll(classes="body", id="result"):
            if result.status == "installed":
                yield from self._installed()
            else:
                yield from self._not_installed()
        with Horizontal(classes="buttons"):
            yield Button("Show log", id="show-log")
            yield Button("Exit", id="exit", variant="primary")
        yield Footer()

    def _installed(self) -> ComposeResult:
        summary = self.result.summary
        verified = " and ran a test session" if summary.get("verified") else ""
        yield Static(f"✔ Shipyard is installed{verified}.", classes="verdict -ok", id="verdict")
        rows = [
            ("Endpoint", summary.get("endpoint")),
            ("Admin key", summary.get("admin_access_key")),
            ("Client env", summary.get("client_env")),
            ("Node id", summary.get("node_id")),
            ("Services", ", ".join(summary.get("units") or [])),
            ("Version", summary.get("version")),
        ]
        for label, value in rows:
            if value:
                yield Horizontal(
                    Label(label, classes="field-label"),
                    Static(str(value), markup=False, classes="value"),
                    classes="summary-row",
                )
        yield Static("Next steps", classes="section-title")
        for number, step in enumerate(next_steps(summary), 1):
            yield Horizontal(
                Label(f"{number}.", classes="number"),
                Static(step, markup=False, classes="value"),
                classes="next-step",
            )

    def _not_installed(self) -> ComposeResult:
        result = self.result
        if result.status == "cancelled":
            yield Static("■ The install was stopped.", classes="verdict -warning", id="verdict")
        else:
            where = f" at step {result.failed_step}" if result.failed_step else ""
            yield Static(f"✖ The install failed{where}.", classes="verdict -error", id="verdict")
        if result.error:
            yield Static(result.error, classes="error-text", markup=False)
        if result.fix:
            yield Static(f"fix: {result.fix}", classes="fix", markup=False)
        yield Static("Rollback", classes="section-title")
        if result.rolled_back:
            yield Static(
                "Undone, last first: " + ", ".join(result.rolled_back) + ".",
                classes="rollback",
                id="rolled-back",
                markup=False,
            )
            yield Static("This machine is as it was before the install.", classes="hint")
        elif result.summary.get("rolled_back") is False:
            yield Static(
                "Nothing was undone: the installation stays in place. Fix the cause and run"
                " shipyard install again to finish it.",
                classes="rollback",
                id="rolled-back",
            )
        else:
            yield Static(
                "Nothing to undo: no step had changed anything yet.",
                classes="rollback",
                id="rolled-back",
            )

    def on_mount(self) -> None:
        self.query_one("#exit", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "exit":
            self.action_exit()
        else:
            self.action_show_log()

    def action_exit(self) -> None:
        self.app.exit(self.result.exit_code)

    def action_show_log(self) -> None:
        self.app.push_screen(LogScreen(self.result))
