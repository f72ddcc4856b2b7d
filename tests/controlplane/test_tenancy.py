"""Tenancy (issue 11 items 1, 3, 7): domains, projects and their members, roles and user status,
sign-in with e-mail and password, resource presets, and the audit log."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from controlplane import passwords
from controlplane.api.app import create_app
from controlplane.audit import entry as audit_entry
from controlplane.config import ControlPlaneConfig
from controlplane.core import Core
from controlplane.db.engine import MIGRATIONS, create_engine, dispose, sessionmaker
from controlplane.db.models import AuditEntry
from controlplane.server import running_core, write_admin_keypair
from controlplane.testing import TEST_IMAGE, FakeNode
from tests.controlplane.conftest import API, Keypair
from tests.controlplane.test_graphql import errors, gql

pytestmark = pytest.mark.anyio
SMALL = {"cpu": "0.25", "mem": "64m"}


async def sign_in(api: API, email: str, password: str, **extra: Any) -> tuple[int, Any]:
    """POST /auth/authorize, unsigned, as Backend.AI's web server sends it."""
    body = {"type": "keypair", "username": email, "password": password, **extra}
    response = await api.app.test_client().post("/auth/authorize", json=body)
    return response.status_code, json.loads(await response.get_data())


async def make_user(
    api: API,
    email: str,
    *,
    domain: str = "default",
    role: str = "user",
    password: str = "correct horse",
    admin_keypair: bool = False,
    by: Keypair | None = None,
) -> Keypair:
    created = await api.call(
        "POST",
        "/admin/users",
        {"email": email, "role": role, "domain": domain, "password": password},
        keypair=by,
    )
    assert created.status == 201, created.body
    made = await api.call(
        "POST", "/admin/keypairs", {"user": email, "isAdmin": admin_keypair}, keypair=by
    )
    assert made.status == 201, made.body
    return Keypair(made.body["accessKey"], made.body["secretKey"])


async def new_session(api: API, keypair: Keypair, name: str, group: str | None = None) -> Any:
    body: dict[str, Any] = {"image": "python", "name": name, "config": {"resources": SMALL}}
    if group is not None:
        body["group"] = group
    return await api.call("POST", "/session", body, keypair=keypair)


async def audit(api: API, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    listed = await api.call("GET", "/admin/audit" + (f"?{query}" if query else ""))
    assert listed.status == 200, listed.body
    items: list[dict[str, Any]] = listed.body["items"]
    return items


async def test_sign_in_answers_the_users_keypair_and_limits_failed_attempts(api: API) -> None:
    alice = await make_user(api, "alice@example.com")
    status, body = await sign_in(api, "alice@example.com", "correct horse")
    assert status == 200, body
    assert body["data"] == {
        "access_key": alice.access_key,
        "secret_key": alice.secret_key,
        "role": "user",
        "status": "active",
    }
    for _ in range(passwords.MAX_FAILURES):
        status, body = await sign_in(api, "alice@example.com", "wrong guess")
        assert (status, body["title"]) == (401, "Credential/signature mismatch.")
    # locked: even the right password is refused until the window passes
    status, body = await sign_in(api, "alice@example.com", "correct horse")
    assert status == 429 and "try again in" in body["msg"], body
    # an unknown e-mail fails the same way as a wrong password
    status, _ = await sign_in(api, "nobody@example.com", "correct horse", domain="default")
    assert status in (401, 429)

    entries = await audit(api, action="sign-in")
    outcomes = [(e["actor"], e["outcome"], e["statusCode"]) for e in entries]
    assert outcomes[0] == ("alice@example.com", "success", 200)
    assert outcomes[1:6] == [("alice@example.com", "failure", 401)] * 5
    assert outcomes[6] == ("alice@example.com", "failure", 429)
    assert all(e["remoteAddr"] for e in entries)


def test_failed_sign_ins_are_forgotten_once_out_of_the_window() -> None:
    guard = passwords.SignInGuard()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(passwords.MAX_FAILURES):
        assert guard.retry_after("a@example.com", "10.0.0.1", start) is None
        guard.failed("a@example.com", "10.0.0.1", start + timedelta(seconds=n))
    wait = guard.retry_after("a@example.com", "10.0.0.9", start + timedelta(seconds=10))
    assert wait == passwords.WINDOW.total_seconds() - 10  # the e-mail is locked everywhere
    assert guard.retry_after("b@example.com", "10.0.0.1", start) is not None  # so is the address
    later = start + passwords.WINDOW + timedelta(seconds=1)
    assert guard.retry_after("a@example.com", "10.0.0.1", later) is None


async def test_the_bootstrap_admin_signs_in_with_its_generated_password(
    database_url: str, tmp_path: Path
) -> None:
    config = ControlPlaneConfig(state_dir=tmp_path, node_token="t", database_url=database_url)
    engine = create_engine(config.effective_database_url)
    try:
        async with running_core(config, engine) as (core, made):
            assert made is not None
            write_admin_keypair(config, *made)
            api = API(create_app(core), core, Keypair(made[0].access_key, made[1]))
            written = json.loads(config.admin_keypair_file.read_text())
            assert stat.S_IMODE(config.admin_keypair_file.stat().st_mode) == 0o600
            status, body = await sign_in(api, written["email"], written["password"])
            assert (status, body["data"]["access_key"]) == (200, written["access_key"])
            assert body["data"]["role"] == "superadmin"
            async with core.db() as db:
                hashed = await db.scalar(text("SELECT password_hash FROM users"))
            assert hashed.startswith("$argon2id$") and written["password"] not in hashed
    finally:
        await dispose(engine)


async def test_an_inactive_user_neither_signs_requests_nor_signs_in(api: API) -> None:
    bob = await make_user(api, "bob@example.com")
    assert (await api.call("GET", "/session", keypair=bob)).status == 200
    changed = await api.call("PATCH", "/admin/users/bob@example.com", {"status": "inactive"})
    assert (changed.status, changed.body["status"]) == (200, "inactive")
    assert (await api.call("GET", "/session", keypair=bob)).status == 401
    assert (await sign_in(api, "bob@example.com", "correct horse"))[0] == 401
    again = await api.call("PATCH", "/admin/users/bob@example.com", {"status": "active"})
    assert again.status == 200
    assert (await api.call("GET", "/session", keypair=bob)).status == 200
    bad = await api.call("PATCH", "/admin/users/bob@example.com", {"status": "asleep"})
    assert bad.status == 400 and "status" in bad.body["data"]
    short = await api.call("POST", "/admin/users", {"email": "c@example.com", "password": "x"})
    assert short.status == 400 and "password" in short.body["data"]


async def test_a_user_in_project_a_cannot_see_use_or_name_project_bs_sessions(
    api: API, node: FakeNode
) -> None:
    for project in ("proj-a", "proj-b"):
        made = await api.call("POST", "/admin/projects", {"domain": "default", "name": project})
        assert made.status == 201, made.body
    alice = await make_user(api, "alice@example.com")
    bob = await make_user(api, "bob@example.com")
    for project, email in (("proj-a", "alice"), ("proj-b", "bob")):
        path = f"/admin/projects/default/{project}/members/{email}@example.com"
        assert (await api.call("PUT", path)).status == 200

    created = await new_session(api, bob, "b-secret-job", group="proj-b")
    assert created.status == 201, created.body
    b_id = created.body["sessionId"]
    # alice may not put a session in a project she is not in
    refused = await new_session(api, alice, "a-job", group="proj-b")
    assert (refused.status, refused.body["msg"]) == (400, "Invalid group")
    assert (await new_session(api, alice, "a-job", group="proj-a")).status == 201

    # REST: not by name, not by id, not in her list
    for ref in ("b-secret-job", b_id):
        hidden = await api.call("GET", f"/session/{ref}", keypair=alice)
        # the very answer a session that never existed gets: nothing more than the ref typed
        assert (hidden.status, hidden.body["msg"]) == (404, f"Session (id={ref}) does not exist.")
        assert (await api.call("DELETE", f"/session/{ref}", keypair=alice)).status == 404
    listed = await api.call("GET", "/session?all=true", keypair=alice)
    assert "b-secret-job" not in json.dumps(listed.body)

    # GraphQL: her projects only; project B's sessions neither listed nor fetched
    groups = await gql(api, "{ groups { id name } }", keypair=alice)
    names = {g["name"]: g["id"] for g in groups["data"]["groups"]}
    assert set(names) == {"default", "proj-a"}
    all_groups = await gql(api, "{ groups { id name } }")
    b_group = next(g["id"] for g in all_groups["data"]["groups"] if g["name"] == "proj-b")
    listing = await gql(
        api,
        "query($g: String) { compute_session_list(limit: 50, offset: 0, group_id: $g)"
        " { items { name } total_count } }",
        {"g": b_group},
        keypair=alice,
    )
    assert listing["data"]["compute_session_list"] == {"items": [], "total_count": 0}
    one = await gql(
        api, "query($id: UUID!) { compute_session(id: $id) { name } }", {"id": b_id}, keypair=alice
    )
    assert one["data"]["compute_session"] is None
    # ... while the owner and the admin see it in project B
    mine = await gql(
        api,
        "query($g: String) { compute_session_list(limit: 50, offset: 0, group_id: $g)"
        " { items { name group_name } } }",
        {"g": b_group},
        keypair=bob,
    )
    assert mine["data"]["compute_session_list"]["items"] == [
        {"name": "b-secret-job", "group_name": "proj-b"}
    ]


async def test_a_domain_admin_manages_only_its_domain(api: API, node: FakeNode) -> None:
    assert (await api.call("POST", "/admin/domains", {"name": "acme"})).status == 201
    boss = await make_user(api, "boss@acme.test", domain="acme", role="admin", admin_keypair=True)
    worker = await make_user(api, "worker@acme.test", domain="acme", by=boss)
    outsider = await make_user(api, "outsider@example.com")
    assert (await new_session(api, outsider, "outside-job")).status == 201
    assert (await new_session(api, worker, "acme-job")).status == 201

    users = await api.call("GET", "/admin/users", keypair=boss)
    assert {u["email"] for u in users.body["items"]} == {"boss@acme.test", "worker@acme.test"}
    keys = await api.call("GET", "/admin/keypairs", keypair=boss)
    assert {k["userEmail"] for k in keys.body["items"]} == {"boss@acme.test", "worker@acme.test"}
    domains = await api.call("GET", "/admin/domains", keypair=boss)
    assert [d["name"] for d in domains.body["items"]] == ["acme"]
    # another domain's objects: forbidden to change, invisible to look up
    other = await api.call(
        "POST", "/admin/projects", {"domain": "default", "name": "x"}, keypair=boss
    )
    assert other.status == 403
    assert (await api.call("POST", "/admin/domains", {"name": "evil"}, keypair=boss)).status == 403
    promote = await api.call(
        "PATCH", "/admin/users/worker@acme.test", {"role": "superadmin"}, keypair=boss
    )
    assert promote.status == 403
    kill = await api.call("DELETE", f"/admin/keypairs/{outsider.access_key}", keypair=boss)
    assert kill.status == 404
    peek = await api.call(
        "GET", f"/session/outside-job?owner_access_key={outsider.access_key}", keypair=boss
    )
    assert peek.status == 404
    seen = await api.call(
        "GET", f"/session/acme-job?owner_access_key={worker.access_key}", keypair=boss
    )
    assert seen.status == 200
    watch = await api.call(
        "GET", f"/events/session?ownerAccessKey={outsider.access_key}", keypair=boss
    )
    assert watch.status == 403
    listed = await gql(
        api,
        "{ compute_session_list(limit: 50, offset: 0) { items { name } } user_list(limit: 50,"
        " offset: 0) { items { email } } }",
        keypair=boss,
    )
    assert [s["name"] for s in listed["data"]["compute_session_list"]["items"]] == ["acme-job"]
    assert {u["email"] for u in listed["data"]["user_list"]["items"]} == {
        "boss@acme.test",
        "worker@acme.test",
    }
    denied = await gql(api, '{ users(domain_name: "default") { email } }', keypair=boss)
    assert errors(denied) and "acme" in errors(denied)[0]
    # running code in another's session: the same reach, also once the session a run names is
    # in memory (controlplane/sessionrefs.py keeps it per caller)
    code = {"mode": "query", "code": "1"}
    run_in = f"/session/acme-job?owner_access_key={worker.access_key}"
    for _ in range(2):
        assert (await api.call("POST", run_in, code, keypair=boss)).status == 200
        assert (await api.call("POST", run_in, code, keypair=outsider)).status == 404
        outside = f"/session/outside-job?owner_access_key={outsider.access_key}"
        assert (await api.call("POST", outside, code, keypair=boss)).status == 404


async def test_graphql_creates_users_and_groups_and_lists_them_with_status(api: API) -> None:
    made = await gql(
        api,
        "mutation($name: String!, $props: GroupInput!) { create_group(name: $name, props: $props)"
        " { ok msg group { id name domain_name } } }",
        {"name": "lab", "props": {"domain_name": "default"}},
    )
    group = made["data"]["create_group"]
    assert group["ok"] is True and group["group"]["name"] == "lab"
    made = await gql(
        api,
        "mutation($email: String!, $props: UserInput!) { create_user(email: $email, props: $props)"
        " { ok msg user { email domain_name groups { name } } } }",
        {
            "email": "carol@example.com",
            "props": {
                "password": "carol's password",
                "domain_name": "default",
                "need_password_change": False,
                "group_ids": [group["group"]["id"]],
            },
        },
    )
    user = made["data"]["create_user"]
    assert user["ok"] is True
    assert sorted(g["name"] for g in user["user"]["groups"]) == ["default", "lab"]
    again = await gql(
        api,
        'mutation { create_user(email: "carol@example.com", props: {password: "p4ssword!",'
        ' domain_name: "default"}) { ok msg } }',
    )
    assert again["data"]["create_user"]["ok"] is False
    assert "already exists" in again["data"]["create_user"]["msg"]
    changed = await api.call("PATCH", "/admin/users/carol@example.com", {"status": "inactive"})
    assert changed.status == 200
    listed = await gql(api, '{ users(status: "inactive") { email status is_active } }')
    assert listed["data"]["users"] == [
        {"email": "carol@example.com", "status": "inactive", "is_active": False}
    ]


async def test_presets_say_which_fit_the_free_capacity_now(api: API, node: FakeNode) -> None:
    for name, slots in (("small", {"cpu": "1", "mem": "1g"}), ("huge", {"cpu": "64", "mem": "1g"})):
        made = await api.call("POST", "/admin/presets", {"name": name, "resourceSlots": slots})
        assert made.status == 201, made.body
    bad = await api.call("POST", "/admin/presets", {"name": "x", "resourceSlots": {"tpu": "1"}})
    assert bad.status == 400 and "tpu" in bad.body["msg"]
    user = await make_user(api, "dana@example.com")
    listed = await api.call("GET", "/resource/presets", keypair=user)
    assert [p["name"] for p in listed.body["presets"]] == ["huge", "small"]
    checked = await api.call("POST", "/resource/check-presets", keypair=user)
    assert checked.status == 200, checked.body
    fits = {p["name"]: p["allocatable"] for p in checked.body["presets"]}
    assert fits == {"huge": False, "small": True}
    assert checked.body["scaling_group_remaining"]["cpu"] == "2"
    assert checked.body["keypair_limits"]["cpu"] == "Infinity"

    # the node's 2 cpus taken: small no longer fits, and the keypair's use shows it
    body = {
        "image": "python",
        "name": "hog-job",
        "config": {"resources": {"cpu": "2", "mem": "1g"}},
    }
    assert (await api.call("POST", "/session", body, keypair=user)).status == 201
    checked = await api.call("POST", "/resource/check-presets", keypair=user)
    assert {p["name"]: p["allocatable"] for p in checked.body["presets"]}["small"] is False
    assert checked.body["keypair_using"]["cpu"] == "2"
    gql_presets = await gql(api, "{ resource_presets { name resource_slots } }", keypair=user)
    small = next(p for p in gql_presets["data"]["resource_presets"] if p["name"] == "small")
    assert json.loads(small["resource_slots"]) == {"cpu": "1", "mem": str(2**30)}
    forbidden = await api.call("DELETE", "/admin/presets/small", keypair=user)
    assert forbidden.status == 403
    assert (await api.call("DELETE", "/admin/presets/small")).status == 200


async def test_every_state_change_is_audited_with_actor_and_outcome(
    api: API, node: FakeNode
) -> None:
    eve = await make_user(api, "eve@example.com")
    assert (await api.call("GET", "/admin/keypairs")).status == 200  # a read: not recorded
    denied = await api.call("POST", "/admin/domains", {"name": "eve-domain"}, keypair=eve)
    assert denied.status == 403
    await gql(api, "{ images { name } }")  # a query: not recorded
    # the fake node's image is known: the alias is made (a refused mutation is a failure)
    await gql(api, f'mutation {{ alias_image(alias: "py", target: "{TEST_IMAGE}") {{ ok }} }}')
    entries = await audit(api)
    actions = [(e["actor"], e["action"], e["outcome"]) for e in entries]
    admin = api.admin.access_key
    assert actions == [
        (admin, "POST /admin/users", "success"),
        (admin, "POST /admin/keypairs", "success"),
        (eve.access_key, "POST /admin/domains", "failure"),
        (admin, "graphql alias_image", "success"),
    ]
    assert [e["statusCode"] for e in entries] == [201, 201, 403, 200]
    only_eve = await audit(api, actor=eve.access_key)
    assert [e["action"] for e in only_eve] == ["POST /admin/domains"]
    failures = await audit(api, outcome="failure")
    assert [e["actor"] for e in failures] == [eve.access_key]
    # users cannot read it; nobody can change it through the API
    assert (await api.call("GET", "/admin/audit", keypair=eve)).status == 403
    assert (await api.call("DELETE", "/admin/audit")).status == 405
    bad = await api.call("GET", "/admin/audit?outcome=maybe")
    assert bad.status == 400


async def test_audit_entries_still_queued_at_stop_are_written(tmp_path: Path) -> None:
    """Entries are written off the request path (audit.Trail, a batch at most every 0.1 s); a
    stopping control plane writes what is still queued before it closes the database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    config = ControlPlaneConfig(state_dir=tmp_path, node_token="t", database_url=url)
    engine = create_engine(url)
    try:
        async with running_core(config, engine) as (core, _):
            entry = audit_entry(
                actor="AKIAQUEUED",
                domain_name="default",
                action="POST /session",
                target="late",
                remote_addr="127.0.0.1",
                status_code=201,
            )
            core.audit.note(entry)
        async with sessionmaker(engine)() as db:
            written = list(await db.scalars(select(AuditEntry.actor)))
        assert written == ["AKIAQUEUED"]
    finally:
        await dispose(engine)


async def test_the_migration_makes_every_user_a_member_of_its_default_project(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:

            def to_0004(sync_conn: object) -> None:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "0004")

            await conn.run_sync(to_0004)
            ids = {name: uuid.uuid4() for name in ("project", "other", "old", "admin")}

            def db_id(name: str) -> object:
                return ids[name].hex if "sqlite" in database_url else ids[name]

            await conn.execute(text("INSERT INTO domains VALUES ('default', CURRENT_TIMESTAMP)"))
            for key, name in (("project", "default"), ("other", "other")):
                await conn.execute(
                    text("INSERT INTO projects VALUES (:id, :name, 'default', CURRENT_TIMESTAMP)"),
                    {"id": db_id(key), "name": name},
                )
            for key, role in (("old", "user"), ("admin", "superadmin")):
                await conn.execute(
                    text(
                        "INSERT INTO users (id, email, role, domain_name, created_at)"
                        " VALUES (:id, :email, :role, 'default', CURRENT_TIMESTAMP)"
                    ),
                    {"id": db_id(key), "email": f"{key}@example.com", "role": role},
                )
        config = ControlPlaneConfig(state_dir=tmp_path, node_token="t", database_url=database_url)
        assert await Core(config, engine).prepare() is None  # the admin existed
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT u.email, u.status, p.name FROM project_members m"
                    " JOIN users u ON u.id = m.user_id JOIN projects p ON p.id = m.project_id"
                    " ORDER BY u.email"
                )
            )
            assert [tuple(r) for r in rows] == [
                ("admin@example.com", "active", "default"),
                ("old@example.com", "active", "default"),
            ]
    finally:
        await engine.dispose()
