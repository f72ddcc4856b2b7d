"""The web UI's routes without a browser (tests/webui drives a real one): signing in, the
session cookie's flags, CSRF on every state-changing route, and who may open which page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape

import anyio
import pytest
from quart.testing import QuartClient, WebsocketResponseError
from sqlalchemy import func, select

import wire
from controlplane import reconcile
from controlplane.db.models import (
    JoinToken,
    ResourcePolicy,
    ResourcePreset,
    Session,
    User,
    VFolderMount,
)
from controlplane.db.models import Keypair as Keypair_
from controlplane.keypairs import ADMIN_EMAIL
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API, Keypair

pytestmark = pytest.mark.anyio


@dataclass
class Browser:
    client: QuartClient
    csrf: str
    cookie: str = ""  # the session cookie's value

    async def get(self, path: str) -> tuple[int, str]:
        response = await self.client.get(path)
        return response.status_code, await response.get_data(as_text=True)

    async def post(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """POST a form with this sign-in's CSRF token (unless `form` says otherwise)."""
        fields = {"csrf_token": self.csrf, **(form or {})}
        response = await self.client.post(path, form=fields)
        body = await response.get_data(as_text=True)
        return response.status_code, body, response.headers.get("Location", "")


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in:\n{html}"
    return found.group(1)


async def sign_in(api: API, keypair: Keypair, secret: str | None = None) -> Browser:
    client = api.app.test_client()
    form_page = await client.get("/ui/sign-in")
    token = _field(await form_page.get_data(as_text=True), "csrf_token")
    response = await client.post(
        "/ui/sign-in",
        form={
            "csrf_token": token,
            "access_key": keypair.access_key,
            "secret_key": secret or keypair.secret_key,
        },
    )
    if response.status_code != 303:
        return Browser(client, "")
    cookie = re.search(r"shipyard_ui=([^;]+)", response.headers["Set-Cookie"])
    assert cookie
    sessions = await client.get("/ui/sessions")
    html = await sessions.get_data(as_text=True)
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', html)
    assert found, html
    return Browser(client, found.group(1), cookie.group(1))


async def _user(api: API, email: str) -> Keypair:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    return Keypair(access_key=created.body["accessKey"], secret_key=created.body["secretKey"])


async def test_wrong_credentials_get_one_message_and_no_cookie(api: API) -> None:
    user = await _user(api, "ui@example.com")
    messages = []
    for access_key, secret in ((user.access_key, "wrong"), ("AKIANOBODY0000000000", "wrong")):
        browser = await sign_in(api, Keypair(access_key, secret))
        status, html = await browser.get("/ui/sessions")
        assert status == 303  # still not signed in
        client = api.app.test_client()
        page = await client.get("/ui/sign-in")
        token = _field(await page.get_data(as_text=True), "csrf_token")
        form = {"csrf_token": token, "access_key": access_key, "secret_key": secret}
        refused = await client.post("/ui/sign-in", form=form)
        assert refused.status_code == 401
        assert "shipyard_ui=" not in refused.headers.get("Set-Cookie", "")
        html = await refused.get_data(as_text=True)
        messages.append(re.search(r'role="alert">(.*?)</div>', html, re.S).group(1))  # type: ignore[union-attr]
    assert messages[0] == messages[1]
    assert "The access key or the secret key is wrong." in messages[0]


async def test_session_cookie_is_httponly_samesite_and_secure_behind_tls(api: API) -> None:
    for scheme, secure in (("http", False), ("https", True)):
        client = api.app.test_client()
        page = await client.get("/ui/sign-in", scheme=scheme)
        token = _field(await page.get_data(as_text=True), "csrf_token")
        form = {
            "csrf_token": token,
            "access_key": api.admin.access_key,
            "secret_key": api.admin.secret_key,
        }
        response = await client.post("/ui/sign-in", form=form, scheme=scheme)
        assert response.status_code == 303
        [cookie] = [c for c in response.headers.getlist("Set-Cookie") if "shipyard_ui=" in c]
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Path=/ui" in cookie
        assert ("Secure" in cookie) is secure


async def test_every_state_changing_request_without_csrf_is_refused(
    api: API, node: FakeNode
) -> None:
    admin = await sign_in(api, api.admin)
    status, _, where = await admin.post("/ui/sessions", {"image": "python", "name": "kept"})
    assert status == 303, where
    session_path = where
    async with api.core.db() as db:
        sessions_before = await db.scalar(select(func.count()).select_from(Session))
        tokens_before = await db.scalar(select(func.count()).select_from(JoinToken))
        users_before = await db.scalar(select(func.count()).select_from(User))
    victim = await _user(api, "victim@example.com")
    changes = [
        ("/ui/sessions", {"image": "python", "name": "forged"}),
        (f"{session_path}/destroy", {}),
        ("/ui/admin/tokens", {}),
        ("/ui/admin/users", {"email": "forged@example.com"}),
        ("/ui/admin/users/victim@example.com", {"status": "inactive"}),
        ("/ui/admin/users/victim@example.com/keypairs", {}),
        (f"/ui/admin/keypairs/{victim.access_key}/revoke", {}),
        ("/ui/admin/policies", {"name": "forged"}),
        ("/ui/admin/policies/default", {"max_concurrent_sessions": "1"}),
        ("/ui/admin/presets", {"name": "forged", "resource_slots": "cpu=1"}),
        ("/ui/sign-out", {}),
    ]
    for token in ("", "not-the-token"):
        for path, form in changes:
            status, html, _ = await admin.post(path, {**form, "csrf_token": token})
            assert status == 403, (path, html)
            assert "CSRF" in html
    # and nothing happened: no session, no token, still signed in, the session still there
    async with api.core.db() as db:
        assert await db.scalar(select(func.count()).select_from(Session)) == sessions_before
        assert await db.scalar(select(func.count()).select_from(JoinToken)) == tokens_before
        assert await db.scalar(select(func.count()).select_from(User)) == users_before + 1
        assert await db.get(ResourcePolicy, "forged") is None
        default = await db.get(ResourcePolicy, "default")
        assert default is not None and default.max_concurrent_sessions == 0
        assert await db.scalar(select(func.count()).select_from(ResourcePreset)) == 0
        assert await db.scalar(select(func.count()).select_from(Keypair_)) == 2  # admin, victim
    assert (await sign_in(api, victim)).csrf  # still active
    status, html = await admin.get(session_path)
    assert status == 200
    assert "Destroyed" not in html and "TERMINATED" not in html
    # signing in needs the token of the sign-in form too
    client = api.app.test_client()
    forged = {"access_key": api.admin.access_key, "secret_key": api.admin.secret_key}
    assert (await client.post("/ui/sign-in", form=forged)).status_code == 403


async def test_pages_open_only_to_those_allowed(api: API, node: FakeNode) -> None:
    owner = await sign_in(api, await _user(api, "owner@example.com"))
    other = await sign_in(api, await _user(api, "other@example.com"))
    admin = await sign_in(api, api.admin)
    nobody = Browser(api.app.test_client(), "")
    status, _, mine = await owner.post("/ui/sessions", {"image": "python", "name": "mine"})
    assert status == 303
    owners_pages = [mine, f"{mine}/logs", f"{mine}/events"]
    admin_pages = [
        f"/ui/admin/{name}"
        for name in ("nodes", "images", "keypairs", "tokens", "users", "policies", "presets")
    ] + ["/ui/admin/users/owner@example.com", "/ui/admin/policies/default"]
    for path in [*owners_pages[:2], *admin_pages, "/ui/sessions", "/ui/sessions/new"]:
        status, _ = await nobody.get(path)
        assert status == 303, path  # to the sign-in page
    for path in owners_pages:  # not even the admin sees another keypair's session here
        for stranger in (other, admin):
            status, html = await stranger.get(path)
            assert status == 404, (path, html)
            assert "does not exist" in html
    for path in admin_pages:
        status, html = await owner.get(path)
        assert status == 403, path
        assert "Insufficient privilege" in html
        status, _ = await admin.get(path)
        assert status == 200, path
    for path, form in (
        (f"{mine}/destroy", {}),
        ("/ui/admin/tokens", {}),
        ("/ui/admin/users", {"email": "sneaky@example.com", "role": "admin"}),
        ("/ui/admin/users/other@example.com", {"role": "admin"}),
        ("/ui/admin/policies/default", {"max_concurrent_sessions": "99"}),
        ("/ui/admin/presets", {"name": "sneaky", "resource_slots": "cpu=1"}),
    ):
        status, _, _ = await other.post(path, form)
        assert status in (403, 404), path
    status, html = await owner.get(mine)
    assert status == 200 and "Session mine" in html


async def test_a_bad_launch_form_says_what_to_fix_and_creates_nothing(
    api: API, node: FakeNode
) -> None:
    admin = await sign_in(api, api.admin)
    status, html, _ = await admin.post("/ui/sessions", {"image": "python", "cpu": "lots"})
    assert status == 400
    assert 'role="alert"' in html and "cpu" in html
    status, html, _ = await admin.post("/ui/sessions", {"image": "no-such-image"})
    assert status == 400 or status == 404
    assert 'role="alert"' in html and "no-such-image" in html
    async with api.core.db() as db:
        assert await db.scalar(select(func.count()).select_from(Session)) == 0


async def test_sign_out_ends_the_session_on_the_server(api: API) -> None:
    admin = await sign_in(api, api.admin)
    replayed = {"Cookie": f"shipyard_ui={admin.cookie}"}
    assert (await api.app.test_client().get("/ui/sessions", headers=replayed)).status_code == 200
    status, _, where = await admin.post("/ui/sign-out")
    assert status == 303 and where.endswith("/ui/sign-in")
    # the old cookie, sent again, no longer signs anyone in
    assert (await api.app.test_client().get("/ui/sessions", headers=replayed)).status_code == 303


async def test_event_streams_start_with_what_the_page_shows(api: API, node: FakeNode) -> None:
    owner = await sign_in(api, api.admin)
    status, _, mine = await owner.post("/ui/sessions", {"image": "python", "name": "live"})
    assert status == 303
    for path, event, shown in (
        ("/ui/sessions/events", "sessions", 'data-session="live"'),
        (f"{mine}/events", "status", 'id="status-value"'),
    ):
        async with owner.client.request(path) as connection:
            await connection.send_complete()
            first = b""
            with anyio.fail_after(10):
                while b"\n\n" not in first:
                    first += await connection.receive()
            text = first.decode()
            assert text.startswith(f"event: {event}\ndata: "), text
            assert shown in text
            await connection.disconnect()


async def test_a_pending_session_shows_why_and_an_impossible_one_is_refused(
    api: API, node: FakeNode
) -> None:
    admin = await sign_in(api, api.admin)
    # the fake node has 2 CPUs: the first takes both, the second waits
    for name in ("big-1", "big-2"):
        status, _, where = await admin.post(
            "/ui/sessions", {"image": "python", "name": name, "cpu": "2"}
        )
        assert status == 303
    with anyio.fail_after(10):
        while True:  # the scheduler has no event to wait for here: poll, bounded
            async with api.core.db() as db:
                waiting = await db.scalar(select(Session).where(Session.name == "big-2"))
            assert waiting is not None and waiting.status == "PENDING"
            if waiting.status_info != "enqueued":
                break
            await anyio.sleep(0.05)
    status, html = await admin.get(where)
    assert status == 200
    assert "PENDING" in html and waiting.status_info in html
    status, html, _ = await admin.post("/ui/sessions", {"image": "python", "cpu": "64"})
    assert status == 400
    assert 'role="alert"' in html and "no node can ever provide" in html


async def test_an_open_event_stream_ends_once_its_browser_signs_out(
    api: API, node: FakeNode
) -> None:
    admin = await sign_in(api, api.admin)
    async with admin.client.request("/ui/sessions/events") as connection:
        await connection.send_complete()
        with anyio.fail_after(10):
            assert (await connection.receive()).startswith(b"event: sessions")
        status, _, _ = await admin.post("/ui/sign-out")
        assert status == 303
        # the next change the stream hears about is not shown: the stream ends
        created = await api.call("POST", "/session", {"image": "python", "enqueueOnly": True})
        assert created.status == 201
        rest = b""
        with anyio.fail_after(10):
            while chunk := await connection.receive():  # b"": the body is complete
                rest += chunk
        assert b"event: sessions" not in rest


async def _sign_in_with_password(api: API, email: str, password: str) -> tuple[int, str, str]:
    client = api.app.test_client()
    token = _field(await (await client.get("/ui/sign-in")).get_data(as_text=True), "csrf_token")
    form = {"csrf_token": token, "email": email, "password": password}
    response = await client.post("/ui/sign-in", form=form)
    cookies = " ".join(response.headers.getlist("Set-Cookie"))
    return response.status_code, await response.get_data(as_text=True), cookies


async def test_password_sign_in_one_message_and_a_limit_on_failures(api: API) -> None:
    created = await api.call(
        "POST", "/admin/users", {"email": "pw@example.com", "password": "right-horse-1"}
    )
    assert created.status == 201, created.body
    await _user(api, "pw@example.com")
    status, _, cookies = await _sign_in_with_password(api, "pw@example.com", "right-horse-1")
    assert status == 303 and "shipyard_ui=" in cookies
    # a wrong password and an unknown e-mail read the same, and the e-mail typed is kept
    messages = []
    for email in ("pw@example.com", "nobody@example.com"):
        status, html, cookies = await _sign_in_with_password(api, email, "wrong-password")
        assert status == 401 and "shipyard_ui=" not in cookies
        assert f'value="{email}"' in html and "wrong-password" not in html
        messages.append(re.search(r'role="alert">(.*?)</div>', html, re.S).group(1))  # type: ignore[union-attr]
    assert messages[0] == messages[1]
    assert "The e-mail or the password is wrong." in messages[0]
    # the API's limit on failed sign-ins holds here too, even for the right password
    for _ in range(3):
        await _sign_in_with_password(api, "pw@example.com", "wrong-password")
    status, html, cookies = await _sign_in_with_password(api, "pw@example.com", "right-horse-1")
    assert status == 429 and "shipyard_ui=" not in cookies
    assert "too many failed sign-ins" in html


async def test_folders_create_upload_download_delete_and_only_for_their_owner(
    api: API,
) -> None:
    owner = await sign_in(api, await _user(api, "files@example.com"))
    other = await sign_in(api, await _user(api, "snoop@example.com"))
    status, _, where = await owner.post("/ui/folders", {"name": "data"})
    assert status == 303 and where.endswith("/ui/folders/data")
    status, html, _ = await owner.post("/ui/folders", {"name": "data"})
    assert status == 400 and 'role="alert"' in html and "already exists" in html
    # the page gets a tus ticket; the browser sends the bytes to the API's tus URL itself
    ticket = await owner.client.post(
        "/ui/folders/data/uploads",
        form={"path": "hello.txt", "size": "11"},
        headers={"X-CSRF-Token": owner.csrf},
    )
    assert ticket.status_code == 200
    url = (await ticket.get_json())["url"]
    headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    for offset, chunk in ((0, b"hello "), (6, b"world")):
        sent = await api.app.test_client().patch(
            url, data=chunk, headers={**headers, "Upload-Offset": str(offset)}
        )
        assert sent.status_code == 204
    status, html = await owner.get("/ui/folders/data")
    assert status == 200 and 'data-entry="hello.txt"' in html
    fetched = await owner.client.get("/ui/folders/data/download?path=hello.txt")
    assert fetched.status_code == 303
    body = await api.app.test_client().get(fetched.headers["Location"])
    assert await body.get_data() == b"hello world"
    # someone else reaches none of it, and without the CSRF token nothing changes
    for path in ("/ui/folders/data", "/ui/folders/data/download?path=hello.txt"):
        status, html = await other.get(path)
        assert status == 404 and "No such virtual folder" in html, path
    status, _, _ = await other.post("/ui/folders/data/delete")
    assert status == 404
    status, _ = await other.get("/ui/folders")
    refused = await owner.client.post("/ui/folders/data/uploads", form={"path": "x", "size": "1"})
    assert refused.status_code == 403
    status, _, _ = await owner.post("/ui/folders/data/delete-file", {"path": "hello.txt"})
    assert status == 303
    status, html = await owner.get("/ui/folders/data")
    assert "hello.txt" not in html
    # shared by invitation: once accepted, the other user has it too
    status, html, _ = await owner.post("/ui/folders/data/invite", {"email": "snoop@example.com"})
    assert status == 200 and "snoop@example.com is invited" in html
    status, html = await other.get("/ui/folders")
    accept = re.search(r'action="(/ui/folders/invitations/[^"]+/accept)"', html)
    assert accept, html
    assert (await other.post(accept.group(1)))[0] == 303
    status, html = await other.get("/ui/folders")
    assert 'data-folder="data"' in html and "shared with you" in html
    assert (await other.get("/ui/folders/data"))[0] == 200
    status, _, _ = await owner.post("/ui/folders/data/delete")
    assert status == 303
    status, html = await owner.get("/ui/folders")
    assert 'data-folder="data"' not in html


async def test_launch_with_a_preset_gpus_and_a_folder(api: API) -> None:
    fake = FakeNode(api.core, "i-gpu", {"cpu": "4", "mem": str(8 * 2**30), "cuda.device": "2"})
    await fake.connect()
    preset = {"name": "small", "resourceSlots": {"cpu": "2", "mem": "1g"}}
    assert (await api.call("POST", "/admin/presets", preset)).status == 201
    admin = await sign_in(api, api.admin)
    assert (await admin.post("/ui/folders", {"name": "inputs"}))[0] == 303
    status, html = await admin.get("/ui/sessions/new")
    assert status == 200
    assert '<option value="small"' in html and "<option>cuda.device</option>" in html
    assert 'name="mount" value="inputs"' in html
    form = {
        "image": "python",
        "name": "gpu-1",
        "preset": "small",
        "mem": "2g",  # replaces the preset's
        "gpu": "1",
        "gpu_slot": "cuda.device",
        "mount": "inputs",
    }
    status, _, where = await admin.post("/ui/sessions", form)
    assert status == 303, where
    async with api.core.db() as db:
        session = await db.scalar(select(Session).where(Session.name == "gpu-1"))
    assert session is not None
    slots = session.requested_slots
    assert (slots["cpu"], slots["mem"], slots["cuda.device"]) == ("2", str(2 * 2**30), "1")
    mounts = await db_mounts(api, session.id)
    assert mounts == ["/home/work/inputs"]


async def test_live_stats_follow_the_heartbeats_and_the_terminal_needs_a_sign_in(
    api: API, node: FakeNode
) -> None:
    admin = await sign_in(api, api.admin)
    status, _, mine = await admin.post("/ui/sessions", {"image": "python", "name": "busy"})
    assert status == 303
    async with admin.client.request(f"{mine}/stats") as connection:
        await connection.send_complete()
        with anyio.fail_after(10):
            first = await connection.receive()
        assert first.startswith(b"event: stats") and b"not running" in first
        await node.wait_until(lambda: bool(node.kernels))
        with anyio.fail_after(10):
            while True:  # RUNNING follows the node's answer: poll, bounded
                async with api.core.db() as db:
                    session = await db.scalar(select(Session).where(Session.name == "busy"))
                if session is not None and session.status == "RUNNING":
                    break
                await anyio.sleep(0.05)
        [kernel_id] = node.kernels
        sample = wire.KernelStats(kernel_id, 50.0, 10, 2**30, 2**31, 0, 0, 0, 0)
        beat = wire.Heartbeat(cpu_pct=50.0, mem_used_bytes=2**30, kernels=[sample])
        await reconcile.on_heartbeats(api.core, [reconcile.Beat(node.node_id, beat)])
        text = b""
        with anyio.fail_after(10):
            while b'data-stat="cpu"' not in text:
                text += await connection.receive()
        assert b"50.0 %" in text and b"<polygon" in text
        await connection.disconnect()
    # the terminal's WebSocket: a sign-in, and a page of this site
    cookie = {"Cookie": f"shipyard_ui={admin.cookie}"}
    for headers, status in (
        ({}, 401),
        (cookie, 403),
        ({**cookie, "Origin": "http://evil.example"}, 403),
    ):
        with pytest.raises(WebsocketResponseError) as refused:
            async with api.app.test_client().websocket(f"{mine}/terminal", headers=headers) as ws:
                with anyio.fail_after(10):
                    await ws.receive()
        assert refused.value.response.status_code == status


async def db_mounts(api: API, session_id: object) -> list[str]:
    async with api.core.db() as db:
        return list(
            await db.scalars(select(VFolderMount.path).where(VFolderMount.session_id == session_id))
        )


def _alert(html: str) -> str:
    found = re.search(r'role="alert">(.*?)</div>', html, re.S)
    assert found, html
    return unescape(found.group(1))


async def test_admin_creates_a_user_issues_and_revokes_its_keypair(api: API) -> None:
    admin = await sign_in(api, api.admin)
    status, html = await admin.get("/ui/admin/users")
    assert status == 200 and 'href="/ui/admin/users"' in html  # its nav link
    # bad input says what to fix and makes nobody
    for form, said in (
        ({"email": "new@example.com", "password": "short"}, "at least 8 characters"),
        ({"email": "not-an-address"}, "is not an e-mail address"),
        ({"email": "new@example.com", "role": "owner"}, "role"),
        ({"email": "new@example.com", "domain": "nowhere"}, "no domain 'nowhere'"),
    ):
        status, html, _ = await admin.post("/ui/admin/users", form)
        assert status in (400, 404), (form, html)
        assert said in _alert(html) and 'value="short"' not in html  # never sent back
    async with api.core.db() as db:
        assert await db.scalar(select(User).where(User.email == "new@example.com")) is None
    form = {"email": "new@example.com", "password": "long-enough-1", "role": "user"}
    status, _, where = await admin.post("/ui/admin/users", form)
    assert status == 303 and where.endswith("/ui/admin/users/new@example.com"), where
    status, html, _ = await admin.post("/ui/admin/users", form)
    assert status == 400 and "already exists" in _alert(html)
    status, html = await admin.get(where)
    assert status == 200 and "User new@example.com" in html and "No keypairs" in html

    # a keypair, its secret shown once; it signs in; revoked, it no longer does
    status, html, _ = await admin.post(f"{where}/keypairs")
    assert status == 201, html
    access = re.search(r'id="new-access-key">([^<]+)<', html)
    secret = re.search(r'id="new-secret-key">([^<]+)<', html)
    assert access and secret, html
    issued = Keypair(access.group(1), secret.group(1))
    assert (await sign_in(api, issued)).csrf
    status, html = await admin.get(where)
    assert issued.secret_key not in html and f'data-keypair="{issued.access_key}"' in html
    status, _, back = await admin.post(f"/ui/admin/keypairs/{issued.access_key}/revoke")
    assert status == 303 and back == where
    assert not (await sign_in(api, issued)).csrf
    status, html = await admin.get(where)
    assert "revoked" in html

    # role and status: deactivated, a fresh keypair of the user does not sign in either
    status, html, _ = await admin.post(where, {"role": "admin", "status": "active"})
    assert status == 303
    fresh = await _user(api, "new@example.com")
    status, _, _ = await admin.post(where, {"status": "inactive"})
    assert status == 303
    status, html = await admin.get("/ui/admin/users")
    row = re.search(r'<tr data-user="new@example.com">(.*?)</tr>', html, re.S)
    assert row and "admin" in row.group(1) and "inactive" in row.group(1)
    assert not (await sign_in(api, fresh)).csrf
    # an admin saves its own page unchanged, but cannot demote itself
    me = f"/ui/admin/users/{ADMIN_EMAIL}"
    status, html, _ = await admin.post(me, {"role": "superadmin", "status": "active"})
    assert status == 303, html
    status, html, _ = await admin.post(me, {"role": "user"})
    assert status == 403 and "your own status or role" in _alert(html)
    status, html = await admin.get("/ui/admin/users/nobody@example.com")
    assert status == 404 and "no user" in html


async def test_a_domain_admin_manages_its_domain_only(api: API) -> None:
    assert (await api.call("POST", "/admin/domains", {"name": "lab"})).status == 201
    made = await api.call(
        "POST", "/admin/users", {"email": "boss@lab.example", "role": "admin", "domain": "lab"}
    )
    assert made.status == 201, made.body
    made = await api.call("POST", "/admin/keypairs", {"user": "boss@lab.example", "isAdmin": True})
    boss = await sign_in(api, Keypair(made.body["accessKey"], made.body["secretKey"]))
    await _user(api, "outsider@example.com")  # in the default domain
    status, html = await boss.get("/ui/admin/users")
    assert status == 200 and 'data-user="boss@lab.example"' in html
    assert "outsider@example.com" not in html and ADMIN_EMAIL not in html
    assert "<option>default</option>" not in html and "<option selected>lab</option>" in html
    # nodes, presets and policies span domains: neither linked nor opened
    for name in ("nodes", "presets", "policies"):
        assert f'href="/ui/admin/{name}"' not in html
        assert (await boss.get(f"/ui/admin/{name}"))[0] == 403
    status, _, _ = await boss.post("/ui/admin/policies/default", {"max_concurrent_sessions": "99"})
    assert status == 403
    status, html = await boss.get("/ui/admin/users/outsider@example.com")
    assert status == 404
    status, _, _ = await boss.post("/ui/admin/users/outsider@example.com", {"status": "inactive"})
    assert status == 404
    status, html, _ = await boss.post(
        "/ui/admin/users", {"email": "x@example.com", "domain": "default"}
    )
    assert status == 403 and "you manage the domain 'lab' only" in _alert(html)
    status, html, _ = await boss.post(
        "/ui/admin/users", {"email": "root@lab.example", "role": "superadmin", "domain": "lab"}
    )
    assert status == 403 and "superadmin" in _alert(html)
    async with api.core.db() as db:
        outsider = await db.scalar(select(User).where(User.email == "outsider@example.com"))
        assert outsider is not None and outsider.status == "active"
        assert await db.scalar(select(User).where(User.email == "x@example.com")) is None


async def test_policies_and_presets_pages_create_edit_and_delete(api: API) -> None:
    admin = await sign_in(api, api.admin)
    form = {
        "name": "students",
        "total_resource_slots": "cpu=4 mem=8g",
        "max_concurrent_sessions": "2",
        "idle_timeout": "600",
        "max_vfolder_size": "10g",
        "allowed_images": "python, python-lab",
    }
    for wrong, said in (
        ({"total_resource_slots": "cpu 4"}, "slot=amount"),
        ({"total_resource_slots": "cpu=lots"}, "total_resource_slots"),
        ({"total_resource_slots": "fpga=1"}, "unknown slot"),
        ({"min_cpu_util_pct": "150"}, "percentage"),
        ({"max_vfolder_size": "huge"}, "Largest folder"),
    ):
        status, html, _ = await admin.post("/ui/admin/policies", {**form, **wrong})
        assert status == 400 and said in _alert(html), (wrong, html)
        assert f'value="{next(iter(wrong.values()))}"' in html  # what was typed is kept
    status, _, where = await admin.post("/ui/admin/policies", form)
    assert status == 303 and where.endswith("/ui/admin/policies")
    status, html, _ = await admin.post("/ui/admin/policies", form)
    assert status == 400 and "already exists" in _alert(html)
    async with api.core.db() as db:
        row = await db.get(ResourcePolicy, "students")
        assert row is not None
        assert (row.total_resource_slots, row.max_concurrent_sessions) == (
            {"cpu": "4", "mem": str(8 * 2**30)},
            2,
        )
        assert (row.idle_timeout, row.max_vfolder_size) == (600, 10 * 2**30)
        assert row.allowed_images == ["python", "python-lab"]
    # the edit form shows the figures as they were typed, and saves changes
    status, html = await admin.get("/ui/admin/policies/students")
    assert status == 200 and 'value="cpu=4 mem=8g"' in html and 'value="10g"' in html
    edited = {**form, "max_concurrent_sessions": "3", "allowed_images": ""}
    edited.pop("name")
    status, _, _ = await admin.post("/ui/admin/policies/students", edited)
    assert status == 303
    status, html, _ = await admin.post(
        "/ui/admin/policies/students", {**edited, "max_concurrent_sessions": "-1"}
    )
    assert status == 400 and "0 or more" in _alert(html)
    async with api.core.db() as db:
        row = await db.get(ResourcePolicy, "students")
        assert row is not None and row.max_concurrent_sessions == 3
        assert row.allowed_images is None
    assert (await admin.get("/ui/admin/policies/nothing"))[0] == 404

    # presets: made here, offered on the launch form, deleted
    bad = {"name": "small", "resource_slots": "cpu=2 mem=1g", "shared_memory": "2g"}
    status, html, _ = await admin.post("/ui/admin/presets", bad)
    assert status == 400 and "shared memory is more than its memory" in _alert(html)
    status, html, _ = await admin.post("/ui/admin/presets", {**bad, "name": "bad name!"})
    assert status == 400 and "name" in _alert(html)
    status, _, _ = await admin.post("/ui/admin/presets", {**bad, "shared_memory": "256m"})
    assert status == 303
    status, html = await admin.get("/ui/admin/presets")
    row_html = re.search(r'<tr data-preset="small">(.*?)</tr>', html, re.S)
    assert row_html and "cpu=2 mem=1 GiB" in row_html.group(1) and "256 MiB" in row_html.group(1)
    assert '<option value="small"' in (await admin.get("/ui/sessions/new"))[1]
    status, _, _ = await admin.post("/ui/admin/presets/small/delete")
    assert status == 303
    assert 'data-preset="small"' not in (await admin.get("/ui/admin/presets"))[1]
    status, html, _ = await admin.post("/ui/admin/presets/small/delete")
    assert status == 404 and "no preset" in html
