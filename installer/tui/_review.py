"""Step 4: the plan as the answers file a headless install would read, and what preflight says
about it. Nothing has changed on the machine until "Install"."""

from __future__ import annotations

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

from installer.plan import Plan, redact
from installer.preflight import Problem
from installer.tui._widgets import ProblemRow


def shown_toml(plan: Plan) -> str:
    """The plan as TOML, with the database password and the join token hidden."""
    hidden = plan.replace(
        database_url=redact(plan.database_url),
        join_token="********" if plan.join_token else "",
    )
    return hidden.to_toml()


class ReviewScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+n", "install", "Install"),
        Binding("ctrl+p", "back", "Back"),
    ]

    class Confirmed(Message):
        """Install this plan: the app moves on to applying it."""

        def __init__(self, plan: Plan) -> None:
            super().__init__()
            self.plan = plan

    def __init__(self, plan: Plan, problems: list[Problem]) -> None:
        super().__init__()
        self.plan = plan
        self.problems = problems
        self.errors = [p for p in problems if p.severity == "error"]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(classes="body", id="review"):
            if self.errors:
                yield Static(
                    "The plan cannot be installed here: go back (Ctrl+P) and change it.",
                    classes="verdict -error",
                    id="verdict",
                )
            else:
                yield Static(
                    "Install this plan? (the same TOML works with"
                    " shipyard install --headless --answers FILE)",
                    classes="verdict",
                    id="verdict",
                )
            for problem in self.problems:
                yield ProblemRow(problem)
            yield Static(
                Syntax(shown_toml(self.plan), "toml", theme="ansi_dark", word_wrap=True),
                id="plan-toml",
            )
        with Horizontal(classes="buttons"):
            yield Button("Back", id="back")
            yield Button("Install", id="install", variant="success", disabled=bool(self.errors))
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#back" if self.errors else "#install", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "install":
            return None if self.errors else True  # None: shown, greyed out
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "install":
            self.action_install()
        else:
            self.action_back()

    def action_install(self) -> None:
        if not self.errors:
            self.post_message(self.Confirmed(self.plan))

    def action_back(self) -> None:
        self.dismiss()
