"""Step 1: what the installer will do, before it touches anything."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

INTRO = """\
[b]Welcome to Shipyard.[/b]

This wizard installs Shipyard on this machine, in four steps:

  [b]1. Detect[/b]   look at the hardware and software here (read-only)
  [b]2. Choose[/b]   role, database, storage, network, address and port
  [b]3. Review[/b]   the plan, as the answers file a headless install would use
  [b]4. Apply[/b]    copy the executable, write /etc/shipyard, create the state
             directories, start the systemd units, check a real session

Nothing changes on this machine before you confirm the plan. A step that
fails undoes the steps before it.

Keys: [b]Tab[/b] moves between fields, [b]Enter[/b] presses a button,
[b]Esc[/b] or [b]Ctrl+C[/b] cancels."""


class WelcomeScreen(Screen[None]):
    BINDINGS = [Binding("ctrl+n", "start", "Start")]

    class Start(Message):
        """The user wants to begin: the app moves on to detection."""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(classes="body"):
            yield Static(INTRO, id="intro")
        with Horizontal(classes="buttons"):
            yield Button("Quit", id="quit")
            yield Button("Start", id="start", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#start", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.action_start()
        else:
            self.app.call_later(self.app.run_action, "request_cancel")

    def action_start(self) -> None:
        self.post_message(self.Start())
