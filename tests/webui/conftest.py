"""Fixtures for the web UI in a real browser: Debian's Chromium (/usr/bin/chromium) driven by
Playwright, against a real appliance (one per module). `./dev test` installs both
(docs/TESTBED.md); Playwright never downloads a browser here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from shipyard.testing import TEST_IMAGE, Appliance, running_appliance

CHROMIUM = Path("/usr/bin/chromium")
# docs/TESTBED.md "Browser": without the background-networking flags it tries outside hosts;
# every host but 127.0.0.1 is made unresolvable besides
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str  # "": none, sign in with the keypair
    access_key: str
    secret_key: str


@pytest.fixture(scope="module")
def appliance() -> Iterator[Appliance]:
    client = docker.from_env()
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{TEST_IMAGE} is missing: ./dev test builds it")
    finally:
        client.close()
    with running_appliance() as appliance:
        yield appliance


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: ./dev test installs Debian's chromium")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    yield browser
    browser.close()


def _context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies), at desktop width; only 127.0.0.1 is contacted."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    outside: list[str] = []
    context.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith("http://127.0.0.1") else None,
    )
    yield context
    context.close()
    assert not outside, f"the UI contacted other hosts: {outside}"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    yield from _context(browser)


@pytest.fixture
def other_context(browser: Browser) -> Iterator[BrowserContext]:
    """A second browser profile: another person at another computer."""
    yield from _context(browser)


def admin_credentials(appliance: Appliance) -> Credentials:
    """The admin's, from the files `shipyard up` leaves: client.env and the control plane's
    admin-keypair.json (its e-mail and password)."""
    env = appliance.env()
    [written] = appliance.state_dir.rglob("admin-keypair.json")
    admin = json.loads(written.read_text())
    return Credentials(
        admin["email"], admin["password"], env["BACKEND_ACCESS_KEY"], env["BACKEND_SECRET_KEY"]
    )


def new_user(appliance: Appliance, email: str, *, password: bool = False) -> Credentials:
    """A user with a keypair (and a password if asked: one more CLI call, so only where a test
    signs in with it), made with the CLI as an admin would."""
    secret = f"pw-{email}" if password else ""
    if password:
        made = appliance.cli("admin", "user", "create", email, "--password", secret)
        assert made.returncode == 0, made.stderr
    made = appliance.cli("admin", "keypair", "create", email)
    assert made.returncode == 0, made.stderr
    access = re.search(r"access key:\s+(\S+)", made.stdout)
    secret_key = re.search(r"secret key:\s+(\S+)", made.stdout)
    assert access and secret_key, made.stdout
    return Credentials(email, secret, access.group(1), secret_key.group(1))


def sign_in(page: Page, appliance: Appliance, who: Credentials) -> None:
    """Sign in with the e-mail and password, or else with the keypair."""
    page.goto(f"{appliance.endpoint}/ui/")
    if who.password:
        page.get_by_label("E-mail").fill(who.email)
        page.get_by_label("Password").fill(who.password)
        page.get_by_role("button", name="Sign in", exact=True).click()
    else:
        page.get_by_label("Access key").fill(who.access_key)
        page.get_by_label("Secret key").fill(who.secret_key)
        page.get_by_role("button", name="Sign in with the keypair").click()
    page.wait_for_url("**/ui/sessions")


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
