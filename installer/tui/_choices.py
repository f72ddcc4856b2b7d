"""Step 3: the choices that make the plan. Every field starts from what detection found."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import (
    Button,
    Checkbox,
    Footer,
    Header,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Static,
)

from installer.detect import Report
from installer.errors import PlanError
from installer.plan import DEFAULT_STATE_DIR, DEFAULT_VFOLDER_ROOT, Plan, default_node_id
from installer.preflight import detected_gpus
from installer.tui._trio_call import CallCancelled, TrioCall
from installer.tui._widgets import ChoiceSet

CheckDatabase = Callable[[str], Awaitable[None]]

NETWORK_HINTS = {
    "none": "Sessions get no network at all: the safest choice.",
    "bridge": "Sessions get Docker's bridge network: outbound access through NAT.",
    "host": "Sessions share this machine's network: fastest, least isolated.",
}
TLS_HINTS = {
    "none": "Plain HTTP: for localhost only, never across a network.",
    "self-signed": "A certificate made here; clients elsewhere trust its file.",
    "provided": "Your CA's certificate and its key, as PEM files.",
}
DSN_PLACEHOLDER = "postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB"


def normalize_dsn(text: str) -> str:
    """Accept the spellings people paste (postgres://, postgresql://) for the asyncpg URL."""
    text = text.strip()
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+asyncpg://" + text.removeprefix(prefix)
    return text


def vfolder_suggestions(report: Report) -> list[str]:
    """Folders for virtual folders on the filesystems detection proposed, best first."""
    suggestions: list[str] = []
    for mount in report.value("storage", "vfolder candidates") or []:
        root = Path(mount)
        if DEFAULT_STATE_DIR.is_relative_to(root):
            path = DEFAULT_VFOLDER_ROOT  # the state dir's own filesystem
        else:
            path = root / "shipyard" / "vfolders"
        if str(path) not in suggestions:
            suggestions.append(str(path))
    return suggestions or [str(DEFAULT_VFOLDER_ROOT)]


def engine_present(report: Report) -> bool:
    finding = report.get("engine", "docker")
    return finding is not None and finding.status == "ok"


CERT_EXAMPLE = "/etc/ssl/certs/shipyard.pem"
KEY_EXAMPLE = "/etc/ssl/private/shipyard.key"


class ChoicesScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+n", "next", "Next", priority=True),
        Binding("ctrl+p", "back", "Back", priority=True),
        Binding("ctrl+t", "check_database", "Check database", priority=True),
    ]

    class Chosen(Message):
        """The choices make this plan: the app moves on to the review."""

        def __init__(self, plan: Plan) -> None:
            super().__init__()
            self.plan = plan

    class DatabaseChecked(Message):
        def __init__(self, call: TrioCall, url: str, error: str | None) -> None:
            super().__init__()
            self.call = call
            self.url = url
            self.error = error

    def __init__(
        self, report: Report, check_database: CheckDatabase, answers: Plan | None = None
    ) -> None:
        super().__init__()
        self._report = report
        # what the form does not ask (paths, the node id, ...) comes from here
        self._answers = answers or Plan(role="all-in-one")
        self._check_database = check_database
        self._call: TrioCall | None = None
        existing: dict[str, Any] = report.value("installation", "shipyard") or {}
        self._existing = existing

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        existing = self._existing
        node = existing.get("role") == "node"
        suggestions = vfolder_suggestions(self._report)
        if self._answers.vfolder_root != DEFAULT_VFOLDER_ROOT:
            suggestions.insert(0, str(self._answers.vfolder_root))
        has_engine = engine_present(self._report)
        yield Header()
        with VerticalScroll(classes="body", id="form"):
            with Horizontal(classes="field"):
                yield Label("Role", classes="field-label")
                with ChoiceSet(id="role"):
                    yield RadioButton("Control plane + node", value=not node)
                    yield RadioButton("Node only (joins a cluster)", value=node)
            with Vertical(id="node-fields"):
                yield self._field(
                    "Control plane", Input(placeholder="http://HOST:8081", id="controlplane-url")
                )
                yield self._field(
                    "Join token",
                    Input(
                        placeholder="from: shipyard node token create",
                        password=True,
                        id="join-token",
                    ),
                )
                yield self._field("Node id", Input(placeholder=default_node_id(), id="node-id"))
            with Vertical(id="aio-fields"):
                with Horizontal(classes="field"):
                    yield Label("Database", classes="field-label")
                    with ChoiceSet(id="database"):
                        yield RadioButton("Embedded (SQLite)", value=True)
                        yield RadioButton("PostgreSQL")
                with Horizontal(classes="field", id="dsn-row"):
                    yield Label("  DSN", classes="field-label")
                    yield Input(placeholder=DSN_PLACEHOLDER, id="dsn", compact=True)
                    yield Button("Check", id="check", compact=True)
                yield Static("", id="dsn-status", classes="hint", markup=False)
                yield self._field(
                    "Listen on",
                    Input(
                        str(existing.get("bind_host") or self._answers.bind_host), id="bind-host"
                    ),
                )
                yield self._field(
                    "Port",
                    Input(
                        str(existing.get("port") or self._answers.port), type="integer", id="port"
                    ),
                )
                with Horizontal(classes="field"):
                    yield Label("TLS", classes="field-label")
                    with ChoiceSet(id="tls"):
                        for mode in TLS_HINTS:
                            yield RadioButton(
                                mode, value=mode == self._answers.tls, name=mode, id=f"tls-{mode}"
                            )
                yield Static(TLS_HINTS[self._answers.tls], id="tls-hint", classes="hint")
                with Vertical(id="tls-files"):
                    provided = self._answers.tls == "provided"
                    answers = self._answers
                    for label, path, example, field_id in (
                        ("  Certificate", answers.tls_certfile, CERT_EXAMPLE, "tls-certfile"),
                        ("  Key", answers.tls_keyfile, KEY_EXAMPLE, "tls-keyfile"),
                    ):
                        shown = path if provided else ""
                        yield self._field(label, Input(shown, placeholder=example, id=field_id))
            yield self._field(
                "Vfolder root",
                Input(
                    suggestions[0],
                    suggester=SuggestFromList(suggestions, case_sensitive=True),
                    id="vfolder-root",
                ),
            )
            found = self._report.get("storage", "vfolder candidates")
            if found is not None and found.detail:
                yield Static(f"found: {found.detail}", classes="hint", markup=False)
            with Horizontal(classes="field"):
                yield Label("Network", classes="field-label")
                with ChoiceSet(id="network"):
                    for mode in NETWORK_HINTS:
                        yield RadioButton(mode, value=mode == "none", name=mode)
            yield Static(NETWORK_HINTS["none"], id="network-hint", classes="hint")
            with Horizontal(classes="field"):
                yield Label("Engine", classes="field-label")
                yield Checkbox(
                    "Docker answers here: nothing to install"
                    if has_engine
                    else "Install Docker (apt-get install docker.io)",
                    value=not has_engine,
                    disabled=has_engine,
                    id="install-engine",
                    compact=True,
                )
            gpus = detected_gpus(self._report)
            if gpus:  # which of them sessions may use; all unless the answers say otherwise
                chosen = self._answers.gpus
                with Horizontal(classes="field"):
                    yield Label("GPUs", classes="field-label")
                    with Vertical(id="gpus"):
                        for ident, finding in gpus.items():
                            yield Checkbox(
                                f"{finding.detail}  {ident}",
                                value=chosen is None or ident in chosen,
                                name=ident,
                                compact=True,
                            )
            yield Static("", id="form-error", markup=False)
        with Horizontal(classes="buttons"):
            yield Button("Back", id="back")
            yield Button("Next", id="next", variant="primary")
        yield Footer()

    @staticmethod
    def _field(label: str, widget: Input) -> Horizontal:
        widget.compact = True
        return Horizontal(Label(label, classes="field-label"), widget, classes="field")

    def on_mount(self) -> None:
        self._show_role_fields()
        self.query_one("#role", RadioSet).focus()

    def on_unmount(self) -> None:
        if self._call is not None:
            self._call.cancel()

    # --- reading the form ------------------------------------------------------------------

    def _value(self, selector: str) -> str:
        return self.query_one(selector, Input).value.strip()

    @property
    def role(self) -> str:
        return "node" if self.query_one("#role", RadioSet).pressed_index == 1 else "all-in-one"

    @property
    def uses_postgres(self) -> bool:
        return (
            self.role == "all-in-one" and self.query_one("#database", RadioSet).pressed_index == 1
        )

    @property
    def network_mode(self) -> str:
        button = self.query_one("#network", RadioSet).pressed_button
        return button.name if button is not None and button.name else "none"

    @property
    def tls(self) -> str:
        button = self.query_one("#tls", RadioSet).pressed_button
        return button.name if button is not None and button.name else "none"

    def build_plan(self) -> Plan:
        """The plan the form describes; PlanError naming what is wrong."""
        fields: dict[str, Any] = {
            "role": self.role,
            "vfolder_root": Path(self._value("#vfolder-root") or str(DEFAULT_VFOLDER_ROOT)),
            "network_mode": self.network_mode,
            "install_engine": self.query_one("#install-engine", Checkbox).value
            and not engine_present(self._report),
        }
        if self.role == "node":
            fields |= {
                "controlplane_url": self._value("#controlplane-url"),
                "join_token": self._value("#join-token"),
                "node_id": self._value("#node-id"),
                # a node serves no TLS; it may trust the control plane's certificate (answers)
                "tls": "none",
                "tls_certfile": self._answers.tls_certfile if self._answers.role == "node" else "",
                "tls_keyfile": "",
            }
        else:
            port = self._value("#port")
            if not port.isdigit():
                raise PlanError("port must be a whole number between 1 and 65535")
            provided = self.tls == "provided"
            fields |= {
                "bind_host": self._value("#bind-host"),
                "port": int(port),
                "tls": self.tls,  # the plan checks the files' paths and says what is missing
                "tls_certfile": self._value("#tls-certfile") if provided else "",
                "tls_keyfile": self._value("#tls-keyfile") if provided else "",
            }
            if self.uses_postgres:
                dsn = normalize_dsn(self._value("#dsn"))
                if not dsn:
                    raise PlanError(f"enter the PostgreSQL DSN ({DSN_PLACEHOLDER})")
                fields["database_url"] = dsn
        boxes = list(self.query("#gpus Checkbox").results(Checkbox))
        if boxes:  # every GPU ticked: None, so that a GPU added later is offered too
            ticked = [box.name or "" for box in boxes if box.value]
            fields["gpus"] = None if len(ticked) == len(boxes) else ticked
        if not fields["vfolder_root"].is_absolute():
            raise PlanError("the vfolder root must be an absolute path")
        return self._answers.replace(**fields)

    # --- reacting ----------------------------------------------------------------------------

    @on(RadioSet.Changed, "#role")
    @on(RadioSet.Changed, "#database")
    @on(RadioSet.Changed, "#tls")
    def _form_changed(self) -> None:
        self._show_role_fields()

    @on(RadioSet.Changed, "#network")
    def _network_changed(self) -> None:
        self.query_one("#network-hint", Static).update(NETWORK_HINTS[self.network_mode])

    def _show_role_fields(self) -> None:
        node = self.role == "node"
        self.query_one("#node-fields").display = node
        self.query_one("#aio-fields").display = not node
        self.query_one("#dsn-row").display = self.uses_postgres
        self.query_one("#dsn-status").display = self.uses_postgres
        self.query_one("#tls-hint", Static).update(TLS_HINTS[self.tls])
        self.query_one("#tls-files").display = self.tls == "provided"
        self.query_one("#form-error", Static).update("")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "check_database":
            return self.uses_postgres
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        match event.button.id:
            case "next":
                self.action_next()
            case "back":
                self.action_back()
            case "check":
                self.action_check_database()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in a field goes to the next one, as Tab does (Enter on DSN checks it)."""
        event.stop()
        if event.input.id == "dsn":
            self.action_check_database()
        else:
            self.focus_next()

    def action_next(self) -> None:
        error = self.query_one("#form-error", Static)
        try:
            plan = self.build_plan()
        except PlanError as exc:
            error.update(f"✖ {exc}")
            error.scroll_visible()
            return
        error.update("")
        self.post_message(self.Chosen(plan))

    def action_back(self) -> None:
        self.dismiss()

    # --- the database check ------------------------------------------------------------------

    def action_check_database(self) -> None:
        if not self.uses_postgres:
            return
        url = normalize_dsn(self._value("#dsn"))
        status = self.query_one("#dsn-status", Static)
        status.set_classes("hint")
        if not url:
            status.update(f"enter a DSN first: {DSN_PLACEHOLDER}")
            return
        if self._call is not None:
            self._call.cancel()
        self._call = TrioCall()
        status.update("connecting…")
        self._run_check(self._call, url)

    @work(thread=True, exclusive=True, group="database", exit_on_error=False)
    def _run_check(self, call: TrioCall, url: str) -> None:
        try:
            call.run(lambda: self._check_database(url))
        except CallCancelled:
            return
        except Exception as exc:  # PlanError says why; anything else is shown as it is
            self.post_message(self.DatabaseChecked(call, url, str(exc)))
            return
        self.post_message(self.DatabaseChecked(call, url, None))

    def on_choices_screen_database_checked(self, message: ChoicesScreen.DatabaseChecked) -> None:
        message.stop()
        if message.call is not self._call:
            return
        status = self.query_one("#dsn-status", Static)
        if message.error is None:
            status.set_classes("hint -ok")
            status.update("✔ connected: the database answers")
        else:
            status.set_classes("hint -error")
            status.update(f"✖ {message.error}")
