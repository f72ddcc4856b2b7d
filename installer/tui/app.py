"""The installer's text UI: one screen per step of the wizard.

    welcome → detect → choices → review → apply → result

The app owns the flow: each screen gets what it needs through its constructor and says what
the user decided by posting a message, which the app answers by pushing the next screen. The
engine's functions come in through the constructor, so tests (and `--demo`, see __main__.py)
hand in doubles; this module never imports them.
"""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from installer import engine
from installer.detect import Report
from installer.detect import detect as real_detect
from installer.plan import Plan
from installer.plan import check_database as real_check_database
from installer.preflight import preflight as real_preflight
from installer.tui._apply import ApplyScreen, Describe, Install
from installer.tui._choices import CheckDatabase, ChoicesScreen
from installer.tui._confirm import ConfirmScreen
from installer.tui._detect import Detect, DetectScreen, Preflight
from installer.tui._result import LogScreen, ResultScreen
from installer.tui._review import ReviewScreen
from installer.tui._welcome import WelcomeScreen

EXIT_INSTALLED, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 130


class InstallerApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "Shipyard installer"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("escape", "request_cancel", "Cancel"),
        # Ctrl+C and Ctrl+Q would quit at once; during an install that must mean "stop and undo"
        Binding("ctrl+c,ctrl+q", "request_cancel", "Cancel", show=False, priority=True),
    ]

    def __init__(
        self,
        *,
        detect: Detect = real_detect,
        preflight: Preflight = real_preflight,
        check_database: CheckDatabase = real_check_database,
        install: Install = engine.install,
        describe: Describe = engine.describe,
        answers: Plan | None = None,
        demo: bool = False,
    ) -> None:
        super().__init__()
        self._detect = detect
        self._preflight = preflight
        self._check_database = check_database
        self._install = install
        self._describe = describe
        self._answers = answers  # where the choices start from (default: Plan's defaults)
        self.demo = demo
        self.report: Report | None = None  # the detection report the user went on with
        if demo:
            self.sub_title = "DEMO: nothing is installed"

    def on_mount(self) -> None:
        self.push_screen(WelcomeScreen())

    # --- the flow ----------------------------------------------------------------------------

    def on_welcome_screen_start(self) -> None:
        self.push_screen(DetectScreen(self._detect, self._preflight))

    def on_detect_screen_accepted(self, message: DetectScreen.Accepted) -> None:
        self.report = message.report
        self.push_screen(ChoicesScreen(message.report, self._check_database, self._answers))

    def on_choices_screen_chosen(self, message: ChoicesScreen.Chosen) -> None:
        assert self.report is not None
        problems = self._preflight(self.report, message.plan)
        self.push_screen(ReviewScreen(message.plan, problems))

    def on_review_screen_confirmed(self, message: ReviewScreen.Confirmed) -> None:
        self.push_screen(ApplyScreen(message.plan, self._install, self._describe))

    def on_apply_screen_ended(self, message: ApplyScreen.Ended) -> None:
        self.push_screen(ResultScreen(message.result))

    # --- Escape, Ctrl+C ------------------------------------------------------------------------

    def action_request_cancel(self) -> None:
        screen = self.screen
        if isinstance(screen, ConfirmScreen | LogScreen):
            return  # they answer Escape themselves
        if isinstance(screen, ResultScreen):
            self.exit(screen.result.exit_code)
        elif isinstance(screen, ApplyScreen):
            if screen.finished:
                return
            if screen.stopping:
                self.notify("Undoing the steps done so far; please wait.")
                return

            def stop(yes: bool | None) -> None:
                if yes:
                    screen.stop()

            self.push_screen(
                ConfirmScreen(
                    "Stop the install?\n\nThe steps done so far will be undone.",
                    yes="Stop and undo",
                    no="Keep installing",
                ),
                stop,
            )
        else:

            def leave(yes: bool | None) -> None:
                if yes:
                    self.exit(EXIT_CANCELLED)

            self.push_screen(
                ConfirmScreen(
                    "Quit the installer?\n\nNothing has been changed on this machine.",
                    yes="Quit",
                    no="Stay",
                ),
                leave,
            )


def run_tui(app: InstallerApp | None = None) -> int:
    """Run the installer's text UI (the real one unless `app` is given); 0 when installed, 1
    when it failed, 130 when cancelled."""
    code = (app or InstallerApp()).run()
    if code is None:  # the app crashed (Textual printed why)
        return EXIT_FAILED
    return code
