"""Small widgets the screens share: a finding, a preflight problem, a row of buttons."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, RadioButton, RadioSet, Static

from installer.detect import Finding
from installer.preflight import Problem

# one glyph per status; the colour comes from app.tcss (.-ok, .-warning, .-error, .-info)
ICONS = {"ok": "✔", "warning": "▲", "error": "✖", "info": "•"}


class FindingRow(Horizontal):
    """One line of the detection report: status icon, what was looked at, what was found."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(classes=f"finding -{finding.status}")
        self.finding = finding

    def compose(self) -> ComposeResult:
        yield Label(ICONS.get(self.finding.status, "?"), classes="icon")
        yield Label(self.finding.name, classes="name")
        yield Static(self.finding.detail, classes="detail", markup=False)


class ProblemRow(Horizontal):
    """A preflight problem and, under it, how to fix it."""

    def __init__(self, problem: Problem, note: str = "") -> None:
        super().__init__(classes=f"problem -{problem.severity}")
        self.problem = problem
        self.note = note

    def compose(self) -> ComposeResult:
        yield Label(ICONS[self.problem.severity], classes="icon")
        with Vertical(classes="text"):
            yield Static(self.problem.message, classes="message", markup=False)
            if self.problem.fix:
                yield Static(f"fix: {self.problem.fix}", classes="fix", markup=False)
            if self.note:
                yield Static(self.note, classes="note", markup=False)


class ChoiceSet(RadioSet):
    """A RadioSet whose arrow keys also choose, as radio groups do elsewhere (Textual's only
    move a highlight and wait for Space or Enter, which is easy to miss). Only the keys choose:
    RadioSet moves the highlight on mount too, which must not undo the button set on."""

    BINDINGS = [
        Binding("down,right", "choose_next", "Next option", show=False),
        Binding("up,left", "choose_previous", "Previous option", show=False),
    ]

    def action_choose_next(self) -> None:
        self.action_next_button()
        self._press_highlighted()

    def action_choose_previous(self) -> None:
        self.action_previous_button()
        self._press_highlighted()

    def _press_highlighted(self) -> None:
        index = self._selected  # the highlighted button (RadioSet's own state)
        if index is not None:
            button = self.query(RadioButton)[index]
            button.value = True
