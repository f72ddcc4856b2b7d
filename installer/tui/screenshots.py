"""Every installer screen, driven to a telling state on the made-up machine of
`installer.tui.testing`, the real engine installing into its sandbox; the snapshot tests and the
screenshots in docs/installer/ use them. What differs from run to run (the admin's access key)
is masked before the picture is taken.

    python -m installer.tui.screenshots [DIR]     # writes DIR/<scene>.svg (docs/installer)
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, Static

from installer.tui._apply import ApplyScreen, StepList
from installer.tui._choices import ChoicesScreen
from installer.tui._confirm import ConfirmScreen
from installer.tui._detect import DetectScreen
from installer.tui._result import ResultScreen
from installer.tui._review import ReviewScreen
from installer.tui.app import InstallerApp
from installer.tui.testing import SERVICES_FAIL, FakeDatabase, Sandbox, demo_report, fake_app

SIZE = (80, 24)
TIMEOUT = 10.0
INSTALL_TIMEOUT = 120.0  # a whole install: the services start, a session runs
Drive = Callable[[Pilot[int]], Awaitable[None]]


async def wait_until(
    pilot: Pilot[int], predicate: Callable[[], bool], what: str, patience: float = TIMEOUT
) -> None:
    """Let the app run until `predicate()` holds; TimeoutError naming `what` after `patience`
    seconds."""
    deadline = time.monotonic() + patience
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {patience:.0f} s for {what}")
        await pilot.pause(0.01)
    await pilot.pause()


async def wait_for_screen(
    pilot: Pilot[int], kind: type[Screen[Any]], patience: float = TIMEOUT
) -> None:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, kind), kind.__name__, patience)


# --- the way through the wizard -------------------------------------------------------------


async def to_detect(pilot: Pilot[int]) -> None:
    await pilot.press("enter")
    await wait_for_screen(pilot, DetectScreen)
    screen = pilot.app.screen
    assert isinstance(screen, DetectScreen)
    await wait_until(pilot, lambda: screen.report is not None, "the detection report")


async def to_choices(pilot: Pilot[int]) -> None:
    await to_detect(pilot)
    await pilot.press("ctrl+n")
    await wait_for_screen(pilot, ChoicesScreen)


async def to_review(pilot: Pilot[int]) -> None:
    await to_choices(pilot)
    await pilot.press("ctrl+n")
    await wait_for_screen(pilot, ReviewScreen)


async def to_apply(pilot: Pilot[int]) -> None:
    await to_review(pilot)
    await pilot.press("ctrl+n")
    # a fast engine may be done already: then the result is on top of the apply screen
    await wait_until(
        pilot,
        lambda: any(isinstance(s, ApplyScreen) for s in pilot.app.screen_stack),
        "the apply screen",
    )


async def to_result(pilot: Pilot[int]) -> None:
    await to_apply(pilot)
    await wait_for_screen(pilot, ResultScreen, patience=INSTALL_TIMEOUT)
    mask_secrets(pilot)


def mask_secrets(pilot: Pilot[int]) -> None:
    """Put *** (as many) in place of the admin's access key, new with every install."""
    screen = pilot.app.screen
    assert isinstance(screen, ResultScreen)
    key = str(screen.result.summary.get("admin_access_key", ""))
    if not key:
        return
    for static in screen.query(Static):
        if str(static.render()) == key:
            static.update("*" * len(key))


async def choices_postgres(pilot: Pilot[int]) -> None:
    await to_choices(pilot)
    await pilot.click("#database RadioButton:last-of-type")
    await pilot.click("#dsn")
    pilot.app.screen.query_one(
        "#dsn", Input
    ).value = "postgres://shipyard:secret@db.example:5432/shipyard"
    await pilot.press("enter")
    screen = pilot.app.screen
    await wait_until(
        pilot,
        lambda: "✖" in str(screen.query_one("#dsn-status").render()),
        "the database check",
    )


async def apply_running(pilot: Pilot[int]) -> None:
    await to_apply(pilot)
    steps = pilot.app.screen.query_one(StepList)
    await wait_until(pilot, lambda: steps.state("services") == "running", "step services")


async def apply_confirm_stop(pilot: Pilot[int]) -> None:
    await apply_running(pilot)
    await pilot.press("escape")
    await wait_for_screen(pilot, ConfirmScreen)


async def result_cancelled(pilot: Pilot[int]) -> None:
    await apply_confirm_stop(pilot)
    await pilot.press("y")
    await wait_for_screen(pilot, ResultScreen, patience=INSTALL_TIMEOUT)


async def nothing(pilot: Pilot[int]) -> None:
    await pilot.pause()


Faults = tuple[dict[str, str], set[str]]  # the sandbox's failing verbs, and its hanging ones


@dataclass(frozen=True)
class Scene:
    """One screen in one state: how to make the app, and how to drive it there."""

    description: str
    drive: Drive
    # the systemctl verbs that fail or hang in the sandbox; None: Install is not pressed
    sandbox: Faults | None = None
    blocked: bool = False  # a machine without systemd and without an engine

    def make_sandbox(self) -> Sandbox | None:
        if self.sandbox is None:
            return None
        fail, hang = self.sandbox
        return Sandbox(fail=dict(fail), hang=set(hang))

    def app(self, sandbox: Sandbox | None) -> InstallerApp:
        report = demo_report(pid1="init", engine=False) if self.blocked else demo_report()
        return fake_app(report=report, sandbox=sandbox, database=FakeDatabase())


WORKS: Faults = ({}, set())
FAILS: Faults = ({"enable": SERVICES_FAIL}, set())  # systemctl enable --now of the services fails
HANGS: Faults = ({}, {"enable"})  # ... takes forever


SCENES: dict[str, Scene] = {
    "welcome": Scene("What the installer will do", nothing),
    "detect": Scene("The detection report", to_detect),
    "detect-blocked": Scene(
        "A machine the installer cannot use: errors block Next", to_detect, blocked=True
    ),
    "choices": Scene("The choices, prefilled from detection", to_choices),
    "choices-postgres": Scene("PostgreSQL chosen, and its check failed", choices_postgres),
    "review": Scene("The plan as TOML, with preflight's warnings", to_review),
    "apply": Scene("The install in progress", apply_running, HANGS),
    "apply-stop": Scene("Escape during the install asks first", apply_confirm_stop, HANGS),
    "result": Scene("Installed: where it is and what to do next", to_result, WORKS),
    "result-failed": Scene("A step failed and the others were undone", to_result, FAILS),
    "result-cancelled": Scene(
        "Stopped during the install: everything undone", result_cancelled, HANGS
    ),
}


@contextmanager
def staged(scene: Scene) -> Iterator[InstallerApp]:
    """The scene's app, with its sandbox held while it is used."""
    sandbox = scene.make_sandbox()
    if sandbox is None:
        yield scene.app(None)
        return
    with sandbox.opened():
        yield scene.app(sandbox)


async def save(name: str, scene: Scene, directory: Path) -> Path:
    with staged(scene) as app:
        async with app.run_test(size=SIZE) as pilot:
            await scene.drive(pilot)
            await pilot.wait_for_scheduled_animations()
            await pilot.pause()
            return Path(app.save_screenshot(f"{name}.svg", str(directory)))


async def save_all(directory: Path) -> list[Path]:
    return [await save(name, scene, directory) for name, scene in SCENES.items()]


def main() -> None:
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/installer")
    directory.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(save_all(directory)):
        print(path)


if __name__ == "__main__":
    main()
