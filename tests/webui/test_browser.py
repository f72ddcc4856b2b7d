"""The web UI in Debian's Chromium against a real appliance (real control plane, node and
containers): what a user sees and does, screenshots of each main page into docs/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from shipyard.testing import Appliance, wait_for
from tests.webui.conftest import (
    PHONE,
    Credentials,
    admin_credentials,
    new_user,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.docker
LIVE = 90_000  # ms: a container start on a busy 2-core machine
CHUNK = 4 * 2**20  # an upload's chunk (webui/static/folders.js)
DROPPED_AT = 1_000_003  # bytes of the first chunk that reach the server before the drop


def _stays_on_this_page(page: Page) -> None:
    """Mark the page's JavaScript world: the mark is gone after any reload or navigation."""
    page.evaluate("window.__stillHere = true")


def _did_not_reload(page: Page) -> bool:
    return bool(page.evaluate("window.__stillHere === true"))


def test_sign_in_launch_watch_logs_destroy_sign_out(
    appliance: Appliance, context: BrowserContext
) -> None:
    me = new_user(appliance, "alice@example.com", password=True)
    page = context.new_page()
    # `shipyard up` says where the UI is; that address opens it
    wait_for(lambda: "web UI at" in appliance.up_log(), "shipyard up to print the UI's address")
    printed = re.search(r"web UI at (\S+)", appliance.up_log())
    assert printed and printed.group(1) == f"{appliance.endpoint}/ui/", appliance.up_log()
    page.goto(printed.group(1))
    expect(page.get_by_role("heading", name="Sign in to Shipyard")).to_be_visible()
    screenshot(page, "sign-in")

    # a wrong password: one message that does not say which part was wrong
    page.get_by_label("E-mail").fill(me.email)
    page.get_by_label("Password").fill("not-my-password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("The e-mail or the password is wrong.")

    # the keypair is the other way in; a wrong secret gets one message too
    page.get_by_label("Access key").fill(me.access_key)
    page.get_by_label("Secret key").fill("not-my-secret")
    page.get_by_role("button", name="Sign in with the keypair").click()
    expect(page.get_by_role("alert")).to_contain_text("The access key or the secret key is wrong.")

    sign_in(page, appliance, me)
    expect(page.get_by_text("No active sessions.")).to_be_visible()
    # a second tab keeps the list open while the first launches
    watcher = context.new_page()
    watcher.goto(f"{appliance.endpoint}/ui/sessions")
    expect(watcher.get_by_text("No active sessions.")).to_be_visible()
    _stays_on_this_page(watcher)

    page.get_by_role("link", name="Launch a session").click()
    expect(page.get_by_label("Image")).to_have_value("python")
    page.get_by_label("Name").fill("web-1")
    page.get_by_label("CPU cores").fill("1")
    screenshot(page, "launch")
    page.get_by_role("button", name="Launch").click()
    page.wait_for_url(re.compile(r".*/ui/sessions/[0-9a-f-]{36}$"))
    _stays_on_this_page(page)
    expect(page.locator("#status-value")).to_have_text("RUNNING", timeout=LIVE)
    assert _did_not_reload(page)
    history = page.get_by_role("table")
    expect(history).to_contain_text("PENDING")
    expect(history).to_contain_text("RUNNING")
    # which container runs it (the node keeps warm kernels beside it, so it is named here)
    running = re.search(
        r"container ([0-9a-f]{12}) on", page.locator("#session-status").inner_text()
    )
    assert running, page.locator("#session-status").inner_text()

    # the list in the other tab followed, without reloading
    row = watcher.locator('tr[data-session="web-1"]')
    expect(row).to_contain_text("RUNNING", timeout=LIVE)
    assert _did_not_reload(watcher)
    screenshot(watcher, "sessions")
    watcher.set_viewport_size(PHONE)
    screenshot(watcher, "sessions-phone")

    # a terminal in the page: a shell in the container, over the browser's sign-in
    page.get_by_role("button", name="Open a terminal").click()
    screen = page.locator("#terminal .xterm-rows")
    expect(screen).to_contain_text("$", timeout=LIVE)  # its prompt: the shell reads keys now
    page.keyboard.type("echo $((6*7))-from-the-browser")
    page.keyboard.press("Enter")
    expect(screen).to_contain_text("42-from-the-browser")
    # the live statistics: each node heartbeat (every 5 s) adds a sample, no reload
    expect(page.locator('#session-stats [data-stat="cpu"]')).to_contain_text("%", timeout=LIVE)
    expect(page.locator("#session-stats [data-samples]")).to_have_attribute(
        "data-samples", re.compile("[2-9]"), timeout=LIVE
    )
    expect(page.locator("#session-stats polygon")).to_have_count(2)
    expect(page.locator("#session-apps")).to_contain_text("offers no apps")
    # the container's logs (the runner says where it dials in, on its stderr)
    page.get_by_role("button", name="Refresh logs").click()
    expect(page.locator("#logs pre")).to_contain_text("runner: dialling")
    assert _did_not_reload(page)
    screenshot(page, "session")

    page.get_by_role("button", name="Destroy").click()
    expect(page.locator("#status-value")).to_have_text("TERMINATED", timeout=LIVE)
    expect(row).to_have_count(0, timeout=LIVE)  # only active sessions are listed
    assert _did_not_reload(watcher)
    assert not [c for c in appliance.containers() if c.startswith(running.group(1))]

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Shipyard")).to_be_visible()
    page.goto(f"{appliance.endpoint}/ui/sessions")
    expect(page.get_by_role("heading", name="Sign in to Shipyard")).to_be_visible()


def test_folders_upload_download_and_delete(
    appliance: Appliance, context: BrowserContext, tmp_path: Path
) -> None:
    page = context.new_page()
    sign_in(page, appliance, new_user(appliance, "erin@example.com"))
    page.get_by_role("link", name="Folders").click()
    page.get_by_label("Folder name").fill("results")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/ui/folders/results")
    # two chunks' worth, so that the upload goes in pieces
    sent = tmp_path / "table.csv"
    sent.write_bytes(b"x,y\n" + bytes(range(256)) * (5 * 2**20 // 256))
    data = sent.read_bytes()
    # The connection drops in the middle of the first chunk, after the server has stored part
    # of it: the page must ask the server where it got to (tus HEAD) and go on from there.
    patched: list[int] = []
    heads: list[str] = []

    def drop_the_first_patch(route: Route) -> None:
        if route.request.method != "PATCH":
            route.continue_()
            return
        offset = int(route.request.headers["upload-offset"])
        patched.append(offset)
        if len(patched) > 1:
            route.continue_()
            return
        route.fetch(post_data=data[offset : offset + DROPPED_AT])  # what reached the server
        route.abort("connectionreset")

    page.route(re.compile(r"/folders/_/tus/upload\?"), drop_the_first_patch)
    page.on(
        "response",
        lambda r: heads.append(r.headers["upload-offset"]) if r.request.method == "HEAD" else None,
    )
    page.locator("#upload-files").set_input_files(sent)
    row = page.locator('tr[data-entry="table.csv"]')
    expect(row).to_contain_text("MiB", timeout=LIVE)  # uploaded, and the listing reloaded
    assert patched == [0, DROPPED_AT, DROPPED_AT + CHUNK], patched
    assert heads == ["0", str(DROPPED_AT)], heads  # at the start, and after the drop
    screenshot(page, "folders")
    with page.expect_download() as fetching:
        row.get_by_role("link", name="table.csv").click()
    got = tmp_path / "got.csv"
    fetching.value.save_as(got)
    assert got.read_bytes() == sent.read_bytes()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Folders").click()
    page.get_by_role("button", name="Delete folder results").click()
    expect(page.locator('tr[data-folder="results"]')).to_have_count(0)


def test_admin_sees_nodes_and_revokes_a_join_token(
    appliance: Appliance, context: BrowserContext
) -> None:
    page = context.new_page()
    # the admin's password, from the file the control plane wrote at its first start
    sign_in(page, appliance, admin_credentials(appliance))
    page.get_by_role("link", name="Nodes").click()
    expect(page.get_by_role("cell", name=appliance.node_id)).to_be_visible()
    expect(page.get_by_text("ALIVE")).to_be_visible()
    screenshot(page, "admin-nodes")
    page.get_by_role("link", name="Images").click()
    expect(page.get_by_role("cell", name="python", exact=True)).to_be_visible()
    page.get_by_role("link", name="Keypairs").click()
    expect(page.get_by_role("heading", name="Keypairs")).to_be_visible()

    page.get_by_role("link", name="Join tokens").click()
    page.get_by_role("button", name="Create a join token").click()
    token = page.locator("#new-token").inner_text()
    assert token.startswith("syj_")
    screenshot(page, "admin-tokens")
    [listed] = page.locator("tr[data-token]").all()
    token_id = listed.get_attribute("data-token")
    expect(listed).to_contain_text("unused")
    page.get_by_role("button", name=f"Revoke token {token_id}").click()
    expect(page.locator(f'tr[data-token="{token_id}"]')).to_contain_text("revoked")
    # the control plane agrees: a node can no longer join with it
    listed_by_cli = appliance.cli("node", "token", "ls")
    assert listed_by_cli.returncode == 0, listed_by_cli.stderr
    [line] = [x for x in listed_by_cli.stdout.splitlines() if x.startswith(str(token_id))]
    assert "revoked" in line, listed_by_cli.stdout


def test_admin_manages_users_keypairs_policies_and_presets(
    appliance: Appliance, context: BrowserContext, other_context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, appliance, admin_credentials(appliance))
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Users").click()
    page.get_by_label("E-mail").fill("grace@example.com")
    page.get_by_label("Password").fill("grace-password-1")
    page.get_by_role("button", name="Create the user").click()
    expect(page.get_by_role("heading", name="User grace@example.com")).to_be_visible()
    page.get_by_role("button", name="Issue a keypair").click()
    access = page.locator("#new-access-key").inner_text()
    secret = page.locator("#new-secret-key").inner_text()
    screenshot(page, "admin-user")

    # she signs in with her password, and sees no admin pages
    grace = other_context.new_page()
    sign_in(grace, appliance, Credentials("grace@example.com", "grace-password-1", access, secret))
    expect(grace.get_by_role("link", name="Users")).to_have_count(0)
    # her keypair revoked, her browser is signed out at its next page
    page.get_by_role("button", name=f"Revoke keypair {access}").click()
    expect(page.locator(f'tr[data-keypair="{access}"]')).to_contain_text("revoked")
    grace.reload()
    expect(grace.get_by_role("heading", name="Sign in to Shipyard")).to_be_visible()
    nav.get_by_role("link", name="Users").click()
    expect(page.locator('tr[data-user="grace@example.com"]')).to_contain_text("active")
    screenshot(page, "admin-users")

    nav.get_by_role("link", name="Policies").click()
    page.get_by_label("Name", exact=True).fill("students")
    page.get_by_label("Total resources at once").fill("cpu=4 mem=8g")
    page.get_by_label("Sessions at once").fill("2")
    page.get_by_role("button", name="Create the policy").click()
    policy = page.locator('tr[data-policy="students"]')
    expect(policy).to_contain_text("cpu=4 mem=8 GiB")
    page.get_by_role("link", name="Edit policy students").click()
    page.get_by_label("Sessions at once").fill("3")
    page.get_by_label("Least CPU use in the window (%)").fill("150")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("percentage")  # the form, kept as typed
    page.get_by_label("Least CPU use in the window (%)").fill("5")
    page.get_by_role("button", name="Save").click()
    expect(policy.get_by_role("cell").nth(2)).to_have_text("3")
    screenshot(page, "admin-policies")

    nav.get_by_role("link", name="Presets").click()
    page.get_by_label("Name", exact=True).fill("small")
    page.get_by_label("Resources").fill("cpu=1 mem=lots")
    page.get_by_role("button", name="Create the preset").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot read 'lots' as a size")
    page.get_by_label("Resources").fill("cpu=1 mem=512m")
    page.get_by_role("button", name="Create the preset").click()
    expect(page.locator('tr[data-preset="small"]')).to_contain_text("cpu=1 mem=512 MiB")
    screenshot(page, "admin-presets")
    page.get_by_role("button", name="Delete preset small").click()
    expect(page.locator('tr[data-preset="small"]')).to_have_count(0)


def test_a_user_reaches_neither_another_users_session_nor_admin_pages(
    appliance: Appliance, context: BrowserContext, other_context: BrowserContext
) -> None:
    owner = context.new_page()
    sign_in(owner, appliance, new_user(appliance, "owner@example.com"))
    owner.goto(f"{appliance.endpoint}/ui/sessions/new")
    owner.get_by_label("Name").fill("private")
    owner.get_by_role("button", name="Launch").click()
    owner.wait_for_url(re.compile(r".*/ui/sessions/[0-9a-f-]{36}$"))
    theirs = owner.url

    other = other_context.new_page()
    sign_in(other, appliance, new_user(appliance, "mallory@example.com"))
    expect(other.get_by_role("link", name="Nodes")).to_have_count(0)
    for path in (theirs, f"{theirs}/logs"):
        response = other.goto(path)
        assert response is not None and response.status == 404
        expect(other.get_by_role("alert")).to_contain_text("does not exist")
    for page_path in ("nodes", "images", "keypairs", "tokens", "users", "policies", "presets"):
        response = other.goto(f"{appliance.endpoint}/ui/admin/{page_path}")
        assert response is not None and response.status == 403
        expect(other.get_by_role("heading", level=1)).to_contain_text("Insufficient privilege")
    screenshot(other, "forbidden")
    owner.get_by_role("button", name="Destroy").click()
    expect(owner.locator("#status-value")).to_have_text(
        re.compile("TERMINATED|CANCELLED"), timeout=LIVE
    )


def test_a_state_changing_request_without_the_csrf_token_is_refused(
    appliance: Appliance, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, appliance, new_user(appliance, "carol@example.com"))
    # the browser's own cookie goes with these requests; only the token is missing or wrong
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        refused = context.request.post(
            f"{appliance.endpoint}/ui/sessions",
            form={"image": "python", "name": "forged"},
            headers=headers,
            max_redirects=0,
        )
        assert refused.status == 403
        assert "CSRF" in refused.text()
    page.reload()
    expect(page.get_by_text("No active sessions.")).to_be_visible()


def test_an_api_error_reads_as_a_message_on_the_form(
    appliance: Appliance, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, appliance, new_user(appliance, "dave@example.com"))
    page.goto(f"{appliance.endpoint}/ui/sessions/new")
    page.get_by_label("CPU cores").fill("64")
    page.get_by_role("button", name="Launch").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("no node can ever provide cpu=64")
    expect(page.get_by_label("CPU cores")).to_have_value("64")  # what was typed is kept
    screenshot(page, "launch-error")


# Last in the module: under xdist another worker may still be building the lab image (minutes).
def test_jupyter_opens_from_the_session_page_and_runs_a_cell(
    appliance: Appliance, context: BrowserContext, lab_image: str
) -> None:
    page = context.new_page()
    sign_in(page, appliance, new_user(appliance, "heidi@example.com"))
    page.get_by_role("link", name="Launch a session").click()
    page.get_by_label("Image").select_option(lab_image)
    page.get_by_label("Name").fill("lab-1")
    page.get_by_role("button", name="Launch").click()
    expect(page.locator("#status-value")).to_have_text("RUNNING", timeout=LIVE)
    # through the app proxy, in a new tab: JupyterLab's own page, then a notebook's cell run
    link = page.get_by_role("link", name="Open jupyter")
    expect(link).to_be_visible(timeout=LIVE)
    with context.expect_page(timeout=LIVE) as opening:  # it appears once JupyterLab answers
        link.click()
    lab = opening.value
    lab.set_default_timeout(LIVE)  # JupyterLab's own start in the browser takes a while
    lab.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    # the kernel, reached over the proxy's WebSocket, says it is ready
    expect(lab.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=LIVE)
    editor = lab.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.click()
    lab.keyboard.type("print(6*7)")
    expect(editor).to_have_text("print(6*7)")
    lab.keyboard.press("Shift+Enter")
    expect(lab.locator(".jp-OutputArea-output").first).to_have_text("42", timeout=LIVE)
    assert lab.url.startswith(f"{appliance.endpoint}/app-proxy/"), lab.url
    screenshot(lab, "jupyter")
    lab.close()
    page.get_by_role("button", name="Destroy").click()
    expect(page.locator("#status-value")).to_have_text("TERMINATED", timeout=LIVE)
