"""The installer's text UI, driven with Pilot at 80x24 on the made-up machine of
installer/tui/testing.py. Install runs the real engine into that module's sandbox (a directory
of its own; systemd played by installer.testing.FakeSystemdHost, which runs the services for
real, the node on the real Docker engine). Preflight and, for the failing database check,
`check_database` are the real ones.

The snapshot tests compare each screen with tests/installer/__snapshots__/test_tui/*.svg;
after a deliberate change of the layout, look at the new pictures and accept them with
`pytest tests/installer/test_tui.py --snapshot-update`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, Static

from installer.detect import Finding
from installer.engine import OnEvent, Outcome, RollingBack, StepFinished, describe
from installer.plan import Plan, check_database
from installer.tui import InstallerApp
from installer.tui._apply import ApplyScreen, StepList
from installer.tui._choices import ChoicesScreen, normalize_dsn, vfolder_suggestions
from installer.tui._confirm import ConfirmScreen
from installer.tui._detect import DetectScreen
from installer.tui._result import ResultScreen
from installer.tui._review import ReviewScreen, shown_toml
from installer.tui._trio_call import CallCancelled, TrioCall
from installer.tui._welcome import WelcomeScreen
from installer.tui.screenshots import (
    INSTALL_TIMEOUT,
    SCENES,
    SIZE,
    apply_running,
    staged,
    to_apply,
    to_choices,
    to_detect,
    to_review,
    wait_for_screen,
    wait_until,
)
from installer.tui.testing import (
    SERVICES_FAIL,
    FakeDatabase,
    FakeDetect,
    Sandbox,
    demo_report,
    fake_app,
)
from shipyard.testing import TEST_IMAGE, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio only


def text_of(app: InstallerApp, selector: str = "Static") -> str:
    """The text the current screen shows in the widgets `selector` matches (and in the
    Static widgets inside them)."""
    parts = []
    for node in app.screen.query(selector):
        statics = [node] if isinstance(node, Static) else list(node.query(Static))
        parts += [str(static.render()) for static in statics]
    return "\n".join(parts)


def result_screen(app: InstallerApp) -> ResultScreen:
    screen = app.screen
    assert isinstance(screen, ResultScreen)
    return screen


# --- the whole way ---------------------------------------------------------------------------


async def test_happy_path_installs_and_shows_where_to_go() -> None:
    with Sandbox(verify_image=TEST_IMAGE).opened() as sandbox:
        await _install_and_show(sandbox)


async def _install_and_show(sandbox: Sandbox) -> None:
    app = fake_app(sandbox=sandbox)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, WelcomeScreen)
        await pilot.press("enter")  # Start has the focus
        await wait_for_screen(pilot, DetectScreen)
        detect = app.screen
        assert isinstance(detect, DetectScreen)
        await wait_until(pilot, lambda: detect.report is not None, "the report")
        titles = text_of(app, ".section-title")
        for section in ("System", "Container engine", "Accelerators", "Storage"):
            assert section in titles
        assert "NVIDIA L40S, 45 GiB" in text_of(app, ".finding .detail")
        assert not app.screen.query_one("#next", Button).disabled

        await pilot.press("enter")  # Next has the focus
        await wait_for_screen(pilot, ChoicesScreen)
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ReviewScreen)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        # the form started from the sandbox's answers; Docker answers already
        assert review.plan == sandbox.answers()
        assert not review.plan.install_engine
        # the small root filesystem is a preflight warning, which does not block
        assert "7.5 GiB free" in text_of(app, ".problem.-warning .message")
        assert not app.screen.query_one("#install", Button).disabled

        await pilot.press("enter")  # Install has the focus
        await wait_for_screen(pilot, ResultScreen, patience=INSTALL_TIMEOUT)
        assert sandbox.plans == [review.plan]
        result = result_screen(app).result
        assert result.status == "installed", result.error
        # the check session really ran on the node the services started
        assert result.summary["verified"] == "42"
        client_env = sandbox.root / "etc" / "client.env"
        settings = client_env.read_text()
        assert f"SHIPYARD_ENDPOINT=http://127.0.0.1:{sandbox.port}" in settings
        shown = text_of(app)
        assert f"http://127.0.0.1:{sandbox.port}" in shown
        assert f"SHIPYARD_ACCESS_KEY={result.summary['admin_access_key']}" in settings
        assert str(result.summary["admin_access_key"]) in shown
        assert str(client_env) in shown
        assert "shipyard run -c 'print(6*7)'" in shown  # a next step that works as it is
        assert f"http://127.0.0.1:{sandbox.port}/ui/" in shown  # the web UI, first next step

        apply = next(s for s in app.screen_stack if isinstance(s, ApplyScreen))
        states = apply.query_one(StepList).steps
        # the steps the real engine runs for this plan, as it names them; the probes
        # (health, verify) change nothing
        assert list(states) == [name for name, _ in describe(review.plan)]
        assert {name for name, state in states.items() if state != "done"} == {
            "health",
            "verify",
        }
        assert states["health"] == states["verify"] == "unchanged"

        await pilot.press("enter")  # Exit
    assert app.return_value == 0


async def test_back_keeps_going_through_the_screens() -> None:
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await pilot.press("ctrl+p")
        await wait_for_screen(pilot, ChoicesScreen)
        await pilot.press("ctrl+p")
        await wait_for_screen(pilot, DetectScreen)
        await pilot.press("ctrl+p")
        await wait_for_screen(pilot, WelcomeScreen)


async def test_a_failing_step_shows_the_failure_and_the_rollback() -> None:
    with Sandbox(fail={"enable": SERVICES_FAIL}).opened() as sandbox:
        await _fail_and_roll_back(sandbox)
        # the real engine took back what the steps before had done
        assert list(sandbox.root.iterdir()) == []


async def _fail_and_roll_back(sandbox: Sandbox) -> None:
    app = fake_app(sandbox=sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await to_apply(pilot)
        await wait_for_screen(pilot, ResultScreen, patience=INSTALL_TIMEOUT)
        result = result_screen(app).result
        assert result.status == "failed"
        assert result.failed_step == "services"
        done = [e.step for e in sandbox.events if isinstance(e, StepFinished) and e.changed]
        assert done == ["state-dirs", "executable", "configs", "units", "database"]
        undone = ["services", "database", "units", "configs", "executable", "state-dirs"]
        assert result.rolled_back == undone
        shown = text_of(app)
        assert "failed at step services" in shown
        assert SERVICES_FAIL in shown
        assert "Undone, last first: " + ", ".join(undone) in shown

        apply = next(s for s in app.screen_stack if isinstance(s, ApplyScreen))
        states = apply.query_one(StepList).steps
        assert states["services"] == "failed"
        assert states["units"] == "undone"
        assert states["verify"] == "pending"

        await pilot.press("l")  # the whole log, over the result
        assert "✖ services: `systemctl enable --now" in "\n".join(line.plain for line in result.log)
        await pilot.press("escape")
        assert isinstance(app.screen, ResultScreen)
        await pilot.press("escape")
    assert app.return_value == 1


async def test_an_engine_that_crashes_is_a_failure_not_a_crashed_ui() -> None:
    async def broken(plan: Plan, on_event: OnEvent) -> Outcome:
        raise RuntimeError("engine bug")

    app = InstallerApp(detect=FakeDetect(demo_report()), install=broken, describe=lambda p: [])
    async with app.run_test(size=SIZE) as pilot:
        await to_apply(pilot)
        await wait_for_screen(pilot, ResultScreen)
        assert "the installer crashed: RuntimeError: engine bug" in text_of(app)
        await pilot.press("enter")
    assert app.return_value == 1


# --- detection -------------------------------------------------------------------------------


async def test_a_blocking_preflight_error_disables_next() -> None:
    detect = FakeDetect(demo_report(pid1="init", engine=False))
    app = InstallerApp(detect=detect)
    async with app.run_test(size=SIZE) as pilot:
        await to_detect(pilot)
        screen = app.screen
        assert isinstance(screen, DetectScreen)
        detecting = screen
        assert screen.query_one("#next", Button).disabled
        assert "1 problem must be fixed" in text_of(app, "#verdict")
        errors = text_of(app, ".problem.-error")
        assert "PID 1 is init, not systemd" in errors
        # a missing engine is an error too, but the choices can fix it (install_engine)
        assert "no container engine answers" in errors
        assert "the next screen can take care of this" in errors
        assert [p.message for p in screen.blocking] == [
            "PID 1 is init, not systemd: the installer runs Shipyard as systemd services"
        ]
        await pilot.press("ctrl+n")  # the binding is disabled too
        assert app.screen is screen

        detect.report = demo_report(engine=False)  # the operator fixed the init system
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: detecting.report is not None, "the second report")
        assert detect.calls == 2
        assert not screen.query_one("#next", Button).disabled
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ChoicesScreen)
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ReviewScreen)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert review.plan.install_engine  # no engine answered: the plan installs one
        assert not review.errors


async def test_errors_in_the_plan_block_install_on_the_review() -> None:
    report = demo_report()
    report.system = [f for f in report.system if f.name != "listening"]
    report.system.append(Finding("listening", ["127.0.0.1:8081"], "info", "1 port in use"))
    app = InstallerApp(detect=FakeDetect(report))
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        assert app.screen.query_one("#install", Button).disabled
        assert "port 8081 on 127.0.0.1 is already in use" in text_of(app, ".problem.-error")
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, ReviewScreen)


# --- choices ---------------------------------------------------------------------------------


async def test_database_check_error_is_shown() -> None:
    """The real check, against a port nothing listens on."""
    app = InstallerApp(detect=FakeDetect(demo_report()), check_database=check_database)
    async with app.run_test(size=SIZE) as pilot:
        await to_choices(pilot)
        await pilot.click("#database RadioButton:last-of-type")
        app.screen.query_one(
            "#dsn", Input
        ).value = f"postgresql://shipyard:pw@127.0.0.1:{free_port()}/shipyard"
        await pilot.press("ctrl+t")
        status = app.screen.query_one("#dsn-status")
        await wait_until(pilot, lambda: "✖" in str(status.render()), "the check's answer")
        shown = str(status.render())
        assert "cannot use the database at" in shown
        assert ":***@127.0.0.1" in shown  # never the password
        assert status.has_class("-error")


async def test_database_check_success_and_the_dsn_in_the_plan() -> None:
    good = "postgresql+asyncpg://shipyard:secret@db.example:5432/shipyard"
    database = FakeDatabase({good})
    app = fake_app(database=database)
    async with app.run_test(size=SIZE) as pilot:
        await to_choices(pilot)
        await pilot.click("#database RadioButton:last-of-type")
        await pilot.click("#dsn")
        app.screen.query_one(
            "#dsn", Input
        ).value = "postgres://shipyard:secret@db.example:5432/shipyard"
        await pilot.press("enter")  # Enter in the DSN field checks it
        status = app.screen.query_one("#dsn-status")
        await wait_until(pilot, lambda: "connected" in str(status.render()), "the check")
        assert database.checked == [good]
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ReviewScreen)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert review.plan.database_url == good
        assert "secret" not in shown_toml(review.plan)


async def test_the_gpus_detection_found_are_offered_and_untaken_ones_left_out() -> None:
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_choices(pilot)
        boxes = list(app.screen.query("#gpus Checkbox").results(Checkbox))
        assert [b.value for b in boxes] == [True, True]  # all by default
        assert isinstance(app.screen, ChoicesScreen)
        assert app.screen.build_plan().gpus is None  # all, and any added later
        boxes[0].value = False
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ReviewScreen)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert review.plan.gpus == [boxes[1].name]
        assert boxes[1].name and boxes[1].name.startswith("GPU-7c2d")
        assert '"GPU-7c2d4e6f-1a3b-4c5d-8e9f-0a1b2c3d4e5f"' in shown_toml(review.plan)


async def test_node_role_needs_the_control_plane_and_a_token() -> None:
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_choices(pilot)
        await pilot.press("right")  # the role set has the focus: Node only
        assert app.screen.query_one("#node-fields").display
        assert not app.screen.query_one("#aio-fields").display
        await pilot.press("ctrl+n")
        error = str(app.screen.query_one("#form-error").render())
        assert "controlplane_url is required" in error
        app.screen.query_one("#controlplane-url", Input).value = "http://cp.example:8081"
        await _choose(pilot, "#join-token")
        await pilot.press(*"jt-123")
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ReviewScreen)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert review.plan.role == "node"
        assert review.plan.join_token == "jt-123"
        assert "jt-123" not in shown_toml(review.plan)


async def _choose(pilot: Pilot[int], selector: str) -> None:
    """Click what `selector` matches, as a user would after scrolling the form to it."""
    widget = pilot.app.screen.query_one(selector)
    widget.scroll_visible(animate=False)
    await pilot.pause()
    await pilot.click(selector)


async def test_choosing_self_signed_tls_reaches_the_engine() -> None:
    got: list[Plan] = []

    async def recording(plan: Plan, on_event: OnEvent) -> Outcome:
        got.append(plan)
        return Outcome(False, {}, error="recorded, not installed")

    app = InstallerApp(detect=FakeDetect(demo_report()), install=recording, describe=lambda p: [])
    async with app.run_test(size=SIZE) as pilot:
        await to_choices(pilot)
        assert "for localhost only" in text_of(app, "#tls-hint")  # none: the default
        await _choose(pilot, "#tls-self-signed")
        assert "A certificate made here" in text_of(app, "#tls-hint")
        assert not app.screen.query_one("#tls-files").display  # no paths to give
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ReviewScreen)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert 'tls = "self-signed"' in shown_toml(review.plan)  # what the review shows
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ResultScreen)
    assert [plan.tls for plan in got] == ["self-signed"]
    assert got[0].endpoint.startswith("https://")


async def test_provided_tls_needs_both_files_as_the_plan_says() -> None:
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_choices(pilot)
        choices = app.screen
        await _choose(pilot, "#tls-provided")
        assert choices.query_one("#tls-files").display
        await pilot.press("ctrl+n")  # no files given
        error = str(choices.query_one("#form-error").render())
        assert "tls = 'provided' needs tls_certfile and tls_keyfile" in error
        assert app.screen is choices
        choices.query_one("#tls-certfile", Input).value = "cert.pem"
        choices.query_one("#tls-keyfile", Input).value = "/etc/ssl/private/shipyard.key"
        await pilot.press("ctrl+n")
        error = str(choices.query_one("#form-error").render())
        assert "tls_certfile must be an absolute path, not 'cert.pem'" in error
        assert app.screen is choices
        choices.query_one("#tls-certfile", Input).value = "/etc/ssl/certs/shipyard.pem"
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ReviewScreen)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert review.plan.tls_files == (
            Path("/etc/ssl/certs/shipyard.pem"),
            Path("/etc/ssl/private/shipyard.key"),
        )
        assert 'tls_certfile = "/etc/ssl/certs/shipyard.pem"' in shown_toml(review.plan)


@pytest.mark.parametrize("tls", ["self-signed", "provided"])
async def test_the_answers_tls_is_selected(tls: str) -> None:
    files = {"tls_certfile": "/c.pem", "tls_keyfile": "/k.pem"} if tls == "provided" else {}
    answers = Plan(role="all-in-one", tls=tls, **files)  # type: ignore[arg-type]
    app = InstallerApp(detect=FakeDetect(demo_report()), answers=answers)
    async with app.run_test(size=SIZE) as pilot:
        await to_choices(pilot)
        choices = app.screen
        assert isinstance(choices, ChoicesScreen)
        assert choices.tls == tls
        assert choices.query_one("#tls-files").display == (tls == "provided")
        await pilot.press("ctrl+n")
        await wait_for_screen(pilot, ReviewScreen)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert review.plan.tls == tls
        assert review.plan.tls_certfile == files.get("tls_certfile", "")


def test_form_helpers() -> None:
    assert normalize_dsn(" postgres://u:p@h/db ") == "postgresql+asyncpg://u:p@h/db"
    assert normalize_dsn("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert vfolder_suggestions(demo_report()) == [
        "/data/shipyard/vfolders",
        "/var/lib/shipyard/vfolders",
    ]


# --- cancelling ------------------------------------------------------------------------------


async def test_cancel_during_apply_cancels_the_engine_and_shows_the_rollback() -> None:
    with Sandbox(hang={"enable"}).opened() as sandbox:
        await _cancel_and_roll_back(sandbox)
        assert list(sandbox.root.iterdir()) == []


async def _cancel_and_roll_back(sandbox: Sandbox) -> None:
    app = fake_app(sandbox=sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await apply_running(pilot)
        await wait_until(pilot, sandbox.hanging.is_set, "systemctl enable")

        await pilot.press("escape")  # asks first; "n" keeps installing
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("n")
        await wait_for_screen(pilot, ApplyScreen)
        assert not any(isinstance(e, RollingBack) for e in sandbox.events)

        await pilot.press("ctrl+c")  # Ctrl+C asks the same question
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("y")
        await wait_for_screen(pilot, ResultScreen, patience=INSTALL_TIMEOUT)
        result = result_screen(app).result
        assert result.status == "cancelled"
        undone = ["services", "database", "units", "configs", "executable", "state-dirs"]
        assert result.rolled_back == undone
        assert [e.step for e in sandbox.events if isinstance(e, RollingBack)] == undone
        assert "The install was stopped" in text_of(app)
        await pilot.press("enter")
    assert app.return_value == 130


@pytest.mark.parametrize("key", ["escape", "ctrl+c", "ctrl+q"])
async def test_quitting_before_the_install_asks_and_exits_130(key: str) -> None:
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_choices(pilot)
        await pilot.press(key)
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("escape")  # no
        await wait_for_screen(pilot, ChoicesScreen)
        await pilot.press(key)
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
    assert app.return_value == 130


async def test_quitting_while_detection_runs_stops_it() -> None:
    detect = FakeDetect(demo_report(), delay=3600)
    app = InstallerApp(detect=detect)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        await wait_for_screen(pilot, DetectScreen)
        await wait_until(pilot, lambda: detect.calls == 1, "detection to start")
        await pilot.press("escape", "y")
        await pilot.pause()
    # leaving run_test joined the worker thread: its trio run was cancelled, not waited out
    assert app.return_value == 130


# --- the bridge between the UI thread and trio ------------------------------------------------


def test_trio_call_returns_and_cancels_from_another_thread() -> None:
    assert TrioCall().run(lambda: _value(7)) == 7

    call = TrioCall()
    started = threading.Event()
    outcome: list[object] = []

    async def forever() -> None:
        started.set()
        await trio.sleep_forever()

    def worker() -> None:
        try:
            call.run(forever)
        except CallCancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(5)
    call.cancel()
    thread.join(5)
    assert outcome == ["cancelled"]

    early = TrioCall()
    early.cancel()  # before trio even started
    with pytest.raises(CallCancelled):
        early.run(forever)


async def _value(value: int) -> int:
    await trio.lowlevel.checkpoint()
    return value


# --- layouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENES))
def test_snapshot(name: str, snap_compare: Callable[..., bool]) -> None:
    scene = SCENES[name]
    with staged(scene) as app:
        assert snap_compare(app, terminal_size=SIZE, run_before=scene.drive)
