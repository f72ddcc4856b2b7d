"""Every route of the app's own route table, for every kind of caller (issue 7 item 8).

ROUTES holds the expected outcome of each route for each caller; a route missing from it fails
the test, so a new route cannot be added without saying who may call it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from quart.testing import WebsocketResponseError
from quart.testing.connections import WebsocketDisconnectError

import wire
from controlplane import sshkeys
from controlplane.testing import TEST_IMAGE, FakeNode
from tests.controlplane.conftest import API, HOST, Keypair

pytestmark = pytest.mark.anyio

OK = "ok"  # authenticated and authorized: the handler ran (its own 4xx included)
DENIED = "denied"  # not authenticated: 401, or 400 invalid-auth-params
FORBIDDEN = "forbidden"  # authenticated, not allowed: 403
HIDDEN = "hidden"  # someone else's session: 404 as if it did not exist
SIGN_IN = "sign in"  # a web UI page: no browser session cookie, so off to the sign-in page

CALLERS = (
    "no auth",
    "bad signature",
    "stale date",
    "unknown key",
    "another user",
    "user",  # the owner of the session the paths name, and an ordinary user
    "node token",
    "admin",  # admins see other users' sessions only when they name the owner
)
PUBLIC = (OK,) * 8
ANY_USER = (DENIED, DENIED, DENIED, DENIED, OK, OK, DENIED, OK)
OWNER = (DENIED, DENIED, DENIED, DENIED, HIDDEN, OK, DENIED, HIDDEN)
ADMIN = (DENIED, DENIED, DENIED, DENIED, FORBIDDEN, FORBIDDEN, DENIED, OK)
NODE = (DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, OK, DENIED)
# an admin-only route naming a folder only its owner reaches: the admin does not see it either
ADMIN_OF_REACHABLE = (DENIED, DENIED, DENIED, DENIED, FORBIDDEN, FORBIDDEN, DENIED, HIDDEN)
# folder transfers carry a token from request-upload/-download instead of a signature
TOKEN = (DENIED,) * 8
# The web UI's pages take a session cookie, never a signature: every caller here is sent to
# sign in. Who may open which page once signed in: tests/controlplane/test_webui_routes.py.
UI = (SIGN_IN,) * 8

# (method, rule) -> expected outcome per caller, in CALLERS order
ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/assets/<path:name>"): PUBLIC,
    ("GET", "/manager/announcement"): ANY_USER,
    ("GET", "/config/resource-slots"): ANY_USER,
    ("GET", "/config/resource-slots/details"): ANY_USER,
    ("GET", "/session"): ANY_USER,
    ("POST", "/session"): ANY_USER,
    ("GET", "/images"): ANY_USER,
    ("POST", "/admin/gql"): ANY_USER,
    ("GET", "/session/<ref>"): OWNER,
    ("GET", "/session/<ref>/logs"): OWNER,
    ("POST", "/session/<ref>/upload"): OWNER,
    ("POST", "/session/<ref>"): OWNER,
    ("DELETE", "/session/<ref>"): OWNER,
    ("GET", "/session/<ref>/files"): OWNER,
    ("GET", "/session/<ref>/download"): OWNER,
    ("POST", "/session/<ref>/rename"): OWNER,
    ("POST", "/session/<ref>/interrupt"): OWNER,
    ("POST", "/session/<ref>/complete"): OWNER,
    ("PATCH", "/session/<ref>"): OWNER,
    ("GET", "/events/session"): OWNER,
    ("WS", "/stream/session/<ref>/execute"): OWNER,
    ("GET", "/stream/session/<ref>/apps"): OWNER,
    ("WS", "/stream/session/<ref>/tcpproxy"): OWNER,
    ("WS", "/stream/session/<ref>/httpproxy"): OWNER,
    ("WS", "/stream/session/<ref>/pty"): OWNER,
    ("GET", "/auth/ssh-keypair"): ANY_USER,
    ("PATCH", "/auth/ssh-keypair"): ANY_USER,
    ("POST", "/auth/ssh-keypair"): ANY_USER,
    ("GET", "/auth/ssh-keypair/private-key"): ANY_USER,
    ("POST", "/stream/session/<ref>/apps/<app>/link"): OWNER,
    # the browser's app proxy takes its own cookie (from the link above), never a signature
    **{
        (method, rule): TOKEN
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        for rule in ("/app-proxy/<session_id>/<app>/", "/app-proxy/<session_id>/<app>/<path:rest>")
    },
    ("WS", "/app-proxy/<session_id>/<app>/<path:rest>"): TOKEN,
    ("GET", "/admin/keypairs"): ADMIN,
    ("POST", "/admin/keypairs"): ADMIN,
    ("DELETE", "/admin/keypairs/<access_key>"): ADMIN,
    ("POST", "/images/aliases"): ADMIN,
    ("DELETE", "/images/aliases/<alias>"): ADMIN,
    ("POST", "/images"): ADMIN,
    ("DELETE", "/images/<path:name>"): ADMIN,
    ("GET", "/nodes"): ADMIN,
    ("POST", "/admin/node-tokens"): ADMIN,
    ("GET", "/admin/node-tokens"): ADMIN,
    ("DELETE", "/admin/node-tokens/<token_id>"): ADMIN,
    ("WS", "/node/connect"): NODE,
    ("POST", "/auth/authorize"): PUBLIC,
    ("GET", "/resource/presets"): ANY_USER,
    ("POST", "/resource/check-presets"): ANY_USER,
    ("GET", "/scaling-groups"): ANY_USER,
    ("POST", "/admin/presets"): ADMIN,
    ("DELETE", "/admin/presets/<name>"): ADMIN,
    ("GET", "/admin/domains"): ADMIN,
    ("POST", "/admin/domains"): ADMIN,
    ("GET", "/admin/projects"): ADMIN,
    ("POST", "/admin/projects"): ADMIN,
    ("PUT", "/admin/projects/<domain>/<project>/members/<email>"): ADMIN,
    ("DELETE", "/admin/projects/<domain>/<project>/members/<email>"): ADMIN,
    ("GET", "/admin/users"): ADMIN,
    ("POST", "/admin/users"): ADMIN,
    ("PATCH", "/admin/users/<email>"): ADMIN,
    ("GET", "/admin/audit"): ADMIN,
    ("GET", "/folders/_/hosts"): ANY_USER,
    ("GET", "/folders/_/all_hosts"): ADMIN,
    ("GET", "/folders/_/allowed_types"): ANY_USER,
    ("GET", "/folders"): ANY_USER,
    ("POST", "/folders"): ANY_USER,
    ("GET", "/folders/<name>"): OWNER,
    ("DELETE", "/folders/<name>"): OWNER,
    ("POST", "/folders/<name>/rename"): OWNER,
    ("POST", "/folders/<name>/clone"): OWNER,
    ("POST", "/folders/<name>/invite"): OWNER,
    ("POST", "/folders/<name>/leave"): OWNER,
    ("POST", "/folders/<name>/share"): ADMIN_OF_REACHABLE,
    ("DELETE", "/folders/<name>/unshare"): OWNER,
    ("GET", "/folders/invitations/list"): ANY_USER,
    ("POST", "/folders/invitations/accept"): ANY_USER,
    ("DELETE", "/folders/invitations/delete"): ANY_USER,
    ("GET", "/folders/_/trash"): ADMIN,
    ("POST", "/folders/_/trash/<folder_id>/restore"): ADMIN,
    ("DELETE", "/folders/_/trash/<folder_id>"): ADMIN,
    ("GET", "/folders/<name>/files"): OWNER,
    ("POST", "/folders/<name>/mkdir"): OWNER,
    ("POST", "/folders/<name>/rename-file"): OWNER,
    ("POST", "/folders/<name>/move-file"): OWNER,
    ("DELETE", "/folders/<name>/delete-files"): OWNER,
    ("POST", "/folders/<name>/request-upload"): OWNER,
    ("POST", "/folders/<name>/request-download"): OWNER,
    ("PATCH", "/folders/_/tus/upload"): TOKEN,
    ("GET", "/folders/_/download"): TOKEN,
    ("GET", "/ui/static/<path:name>"): PUBLIC,
    ("GET", "/ui/sign-in"): PUBLIC,
    # without the token of the sign-in form (and its cookie) nobody signs in
    ("POST", "/ui/sign-in"): (FORBIDDEN,) * 8,
    ("POST", "/ui/sign-out"): UI,
    ("GET", "/ui/"): UI,
    ("GET", "/ui/sessions"): UI,
    ("POST", "/ui/sessions"): UI,
    ("GET", "/ui/sessions/new"): UI,
    ("GET", "/ui/sessions/events"): UI,
    ("GET", "/ui/sessions/<ref>"): UI,
    ("GET", "/ui/sessions/<ref>/logs"): UI,
    ("GET", "/ui/sessions/<ref>/events"): UI,
    ("POST", "/ui/sessions/<ref>/destroy"): UI,
    ("GET", "/ui/admin/nodes"): UI,
    ("GET", "/ui/admin/images"): UI,
    ("GET", "/ui/admin/keypairs"): UI,
    ("GET", "/ui/admin/tokens"): UI,
    ("POST", "/ui/admin/tokens"): UI,
    ("POST", "/ui/admin/tokens/<token_id>/revoke"): UI,
    ("GET", "/ui/admin/users"): UI,
    ("POST", "/ui/admin/users"): UI,
    ("GET", "/ui/admin/users/<email>"): UI,
    ("POST", "/ui/admin/users/<email>"): UI,
    ("POST", "/ui/admin/users/<email>/keypairs"): UI,
    ("POST", "/ui/admin/keypairs/<access_key>/revoke"): UI,
    ("GET", "/ui/admin/policies"): UI,
    ("POST", "/ui/admin/policies"): UI,
    ("GET", "/ui/admin/policies/<name>"): UI,
    ("POST", "/ui/admin/policies/<name>"): UI,
    ("GET", "/ui/admin/presets"): UI,
    ("POST", "/ui/admin/presets"): UI,
    ("POST", "/ui/admin/presets/<name>/delete"): UI,
    ("GET", "/ui/folders"): UI,
    ("POST", "/ui/folders"): UI,
    ("GET", "/ui/folders/<name>"): UI,
    ("POST", "/ui/folders/<name>/delete"): UI,
    ("POST", "/ui/folders/<name>/mkdir"): UI,
    ("POST", "/ui/folders/<name>/delete-file"): UI,
    ("POST", "/ui/folders/<name>/uploads"): UI,
    ("POST", "/ui/folders/<name>/invite"): UI,
    ("POST", "/ui/folders/invitations/<inv_id>/<answer>"): UI,
    ("GET", "/ui/folders/<name>/download"): UI,
    ("GET", "/ui/sessions/<ref>/apps"): UI,
    ("GET", "/ui/sessions/<ref>/apps/<app>/open"): UI,
    ("GET", "/ui/sessions/<ref>/stats"): UI,
    # the terminal's WebSocket takes the browser's cookie too: without it, 401 before it opens
    ("WS", "/ui/sessions/<ref>/terminal"): (DENIED,) * 8,
}
_SSH = sshkeys.generate("matrix")
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/session"): {"image": "python", "enqueueOnly": True},
    ("POST", "/admin/gql"): {"query": "{ images { name } }"},
    ("POST", "/session/<ref>"): {"mode": "query", "code": "print(1)"},
    ("GET", "/session/<ref>/files"): {"path": "."},
    ("GET", "/session/<ref>/download"): {"files": ["x.py"]},
    ("POST", "/session/<ref>/complete"): {"code": "pri"},
    ("POST", "/admin/keypairs"): {"user": "matrix@example.com"},
    ("POST", "/images/aliases"): {"alias": "matrix-alias", "target": "python"},
    ("POST", "/images"): {"name": TEST_IMAGE},
    ("POST", "/admin/node-tokens"): {},
    ("POST", "/auth/authorize"): {"username": "signer@example.com", "password": "matrix-pass"},
    ("POST", "/admin/presets"): {"name": "matrix-preset", "resourceSlots": {"cpu": "1"}},
    ("POST", "/admin/domains"): {"name": "matrix-domain"},
    ("POST", "/admin/projects"): {"domain": "default", "name": "matrix-project"},
    ("POST", "/admin/users"): {"email": "matrix-user@example.com"},
    ("PATCH", "/admin/users/<email>"): {"role": "user"},
    ("POST", "/auth/ssh-keypair"): {"pubkey": _SSH.public_key, "privkey": _SSH.private_key},
    ("POST", "/folders"): {"name": "matrix-new"},
    # the same name: refused as taken, so the folder keeps its name for the routes after it
    ("POST", "/folders/<name>/rename"): {"new_name": "matrix-folder"},
    ("POST", "/folders/<name>/clone"): {"target_name": "matrix-clone"},
    ("POST", "/folders/<name>/invite"): {"user_ids": ["other@example.com"]},
    ("POST", "/folders/<name>/leave"): {},
    ("POST", "/folders/<name>/share"): {"emails": ["other@example.com"]},
    ("DELETE", "/folders/<name>/unshare"): {"emails": ["other@example.com"]},
    ("POST", "/folders/invitations/accept"): {"inv_id": "6a8b7d3e-0000-4000-8000-000000000000"},
    ("DELETE", "/folders/invitations/delete"): {"inv_id": "6a8b7d3e-0000-4000-8000-000000000000"},
    ("GET", "/folders/<name>/files"): {"path": "."},
    ("POST", "/folders/<name>/mkdir"): {"path": "m", "exist_ok": True},
    ("POST", "/folders/<name>/rename-file"): {"target_path": "none", "new_name": "x"},
    ("POST", "/folders/<name>/move-file"): {"src": "none", "dst": "x"},
    ("DELETE", "/folders/<name>/delete-files"): {"files": ["none"]},
    ("POST", "/folders/<name>/request-upload"): {"path": "m.txt", "size": 1},
    ("POST", "/folders/<name>/request-download"): {"path": "none"},
}


@dataclass
class World:
    api: API
    owner: Keypair
    other: Keypair
    victim: str  # a keypair the admin may delete
    token_id: str  # a join token the admin may revoke
    trashed: str  # a folder in the trash (the owner's)

    def path(self, rule: str) -> str:
        values = {
            "ref": "mine",
            "access_key": self.victim,
            "alias": "matrix-alias",
            "token_id": self.token_id,
            "domain": "default",
            "project": "default",
            "email": "victim@example.com",
            "folder_id": self.trashed,
            "inv_id": "no-such-invitation",
            "answer": "accept",
            "session_id": "8a6e0804-2bd0-4672-b79d-d97027f9071b",
            "app": "web",
            "rest": "api/status",
            "name": {"/images/": TEST_IMAGE, "/ui/stat": "app.css"}.get(
                rule[:8], "redoc.standalone.js"
            ),
        }
        if rule.startswith("/folders/"):
            values["name"] = "matrix-folder"
        path = re.sub(r"<(?:[^:>]*:)?([^>]+)>", lambda m: values[m.group(1)], rule)
        if rule.endswith("proxy"):  # the app is required (the fake node's image has none)
            return path + "?app=web"
        if rule == "/session/<ref>/rename":
            return path + "?name=mine"  # the name it has: the world stays as it is
        # a single session's stream ends at once for a session that is gone
        return path + "?sessionName=gone" if rule == "/events/session" else path

    def headers(self, caller: str, method: str, path: str, content_type: str) -> dict[str, str]:
        if caller == "no auth":
            return {}
        date = datetime.now(UTC) - (
            timedelta(minutes=20) if caller == "stale date" else timedelta()
        )
        date_text = date.isoformat()
        if caller == "node token":
            auth = f"Bearer {self.api.core.config.node_token}"
        else:
            keypair = {"another user": self.other, "admin": self.api.admin}.get(caller, self.owner)
            access_key = "AKIANOBODY0000000000" if caller == "unknown key" else keypair.access_key
            secret = "not-the-secret" if caller == "bad signature" else keypair.secret_key
            signature = wire.sign(
                method=method,
                rel_url=path,
                date=date_text,
                host=HOST,
                content_type=content_type,
                version=wire.API_VERSION,
                secret_key=secret,
            )
            auth = wire.authorization_header(access_key, signature)
        return {"Date": date_text, "X-BackendAI-Version": wire.API_VERSION, "Authorization": auth}


async def _user(api: API, email: str) -> Keypair:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    return Keypair(access_key=created.body["accessKey"], secret_key=created.body["secretKey"])


@pytest.fixture
async def world(api: API, node: FakeNode) -> World:
    owner = await _user(api, "owner@example.com")
    other = await _user(api, "other@example.com")
    victim = await _user(api, "victim@example.com")
    for name in ("matrix-folder", "matrix-trashed"):
        made = await api.call("POST", "/folders", {"name": name}, keypair=owner)
        assert made.status == 201
    assert (await api.call("DELETE", "/folders/matrix-trashed", keypair=owner)).status == 204
    # "mine" mounts the folder: the owner's DELETE of it is refused (409), not done
    for name in ("mine", "gone"):
        config = {"mounts": ["matrix-folder"]} if name == "mine" else {}
        created = await api.call(
            "POST", "/session", {"image": "python", "name": name, "config": config}, keypair=owner
        )
        assert created.status == 201
    assert (await api.call("DELETE", "/session/gone", keypair=owner)).status == 200
    alias = await api.call("POST", "/images/aliases", {"alias": "matrix-alias", "target": "python"})
    assert alias.status == 201
    assert (await api.call("POST", "/admin/node-tokens", {})).status == 201
    signer = {"email": "signer@example.com", "password": "matrix-pass"}
    assert (await api.call("POST", "/admin/users", signer)).status == 201
    assert (await api.call("POST", "/admin/keypairs", {"user": "signer@example.com"})).status == 201
    [token] = (await api.call("GET", "/admin/node-tokens")).body["items"]
    return World(api, owner, other, victim.access_key, token["id"], made.body["id"])


def _classify(status: int, body: Any) -> str:
    assert status < 500, body
    slug = body.get("type", "").rsplit("/", 1)[-1] if isinstance(body, dict) else ""
    if status == 401 or slug == "invalid-auth-params":
        return DENIED
    if status == 403:
        return FORBIDDEN
    hidden = ("No such session.", "No such virtual folder.")
    if status == 404 and isinstance(body, dict) and body.get("title") in hidden:
        return HIDDEN
    return OK


async def _http(world: World, caller: str, method: str, rule: str) -> str:
    path = world.path(rule)
    body = BODIES.get((method, rule))
    content = json.dumps(body).encode() if body is not None else b""
    content_type = "application/json" if body is not None else "text/plain"
    headers = {**world.headers(caller, method, path, content_type), "Content-Type": content_type}
    client = world.api.app.test_client()
    response = await client.open(path, method=method, headers=headers, data=content)
    if response.status_code == 303 and response.headers["Location"].endswith("/ui/sign-in"):
        return SIGN_IN
    raw = await response.get_data()
    is_json = "json" in (response.content_type or "")
    return _classify(response.status_code, json.loads(raw) if is_json and raw else None)


async def _websocket(world: World, caller: str, rule: str) -> str:
    path = world.path(rule)
    headers = world.headers(caller, "GET", path, "application/octet-stream")
    if caller == "node token":
        headers = {"Authorization": headers["Authorization"]}
    client = world.api.app.test_client()
    try:
        async with client.websocket(path, headers=headers) as ws:
            with anyio.fail_after(10):
                if rule == "/node/connect" and caller == "node token":
                    register = FakeNode(world.api.core, "i-matrix", {"cpu": "1", "mem": "1g"})
                    await ws.send(wire.encode(register.register_message()))
                    # the hub has no event for this: poll, bounded by fail_after
                    while "i-matrix" not in world.api.core.hub.connected():  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                else:
                    # a refused upgrade raises here; an accepted execute stream answers a bad
                    # first frame with an error frame (a refused node never gets that far)
                    await ws.send("not json")
                    await ws.receive()
    except WebsocketResponseError as refused:
        data = await refused.response.get_data()
        is_json = "json" in (refused.response.content_type or "")  # the web UI's: a page
        return _classify(refused.response.status_code, json.loads(data) if is_json else None)
    except WebsocketDisconnectError:  # accepted, then closed by the handler (the fake node
        return OK  # has no terminal to relay)
    return OK


async def test_every_route_for_every_caller(world: World) -> None:
    routes = [
        ("WS" if rule.websocket else method, rule.rule)
        for rule in world.api.app.url_map.iter_rules()
        for method in sorted(rule.methods or {"GET"})
        if method not in ("HEAD", "OPTIONS")
    ]
    missing = sorted(set(routes) - set(ROUTES))
    assert not missing, f"add these routes to ROUTES with who may call them: {missing}"
    assert not set(ROUTES) - set(routes), "ROUTES names routes the app no longer has"
    wrong = []
    cases = 0
    for method, rule in sorted(routes, key=lambda r: (r[1], r[0] == "DELETE", r[0])):
        for caller, expected in zip(CALLERS, ROUTES[(method, rule)], strict=True):
            if method == "WS":
                got = await _websocket(world, caller, rule)
            else:
                got = await _http(world, caller, method, rule)
            cases += 1
            if got != expected:
                wrong.append(f"{method} {rule} as {caller}: {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)
    assert cases == len(ROUTES) * len(CALLERS)
    print(f"authorization matrix: {cases} cases")
