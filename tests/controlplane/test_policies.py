"""Resource policies (issue 11 item 2): the tables, the migration that gives everything the
`default` policy, and `effective_policy`, the strictest of keypair, user and project."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

import wire
from controlplane import policies
from controlplane.config import ControlPlaneConfig
from controlplane.core import Core
from controlplane.db.engine import MIGRATIONS, create_engine, migrate
from controlplane.db.models import Keypair, Project, ResourcePolicy, Session, User
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API
from tests.controlplane.test_graphql import errors, gql, user_keypair

pytestmark = pytest.mark.anyio


async def test_an_older_database_gets_the_default_policy_and_scaling_group(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    config = ControlPlaneConfig(state_dir=tmp_path, node_token="t", database_url=database_url)
    core = Core(config, engine)
    try:
        async with engine.begin() as conn:

            def to_0004(sync_conn: object) -> None:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = sync_conn
                cfg.attributes["secret_box"] = core.secrets
                command.upgrade(cfg, "0004")

            await conn.run_sync(to_0004)
            ids = {"u": uuid.uuid4(), "p": uuid.uuid4()}
            if "sqlite" in database_url:
                ids = {k: v.hex for k, v in ids.items()}  # type: ignore[misc]
            await conn.execute(text("INSERT INTO domains VALUES ('lab', CURRENT_TIMESTAMP)"))
            await conn.execute(
                text(
                    "INSERT INTO projects (id, name, domain_name, created_at)"
                    " VALUES (:p, 'vision', 'lab', CURRENT_TIMESTAMP)"
                ),
                ids,
            )
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, role, domain_name, created_at)"
                    " VALUES (:u, 'old@example.com', 'superadmin', 'lab', CURRENT_TIMESTAMP)"
                ),
                ids,
            )
            await conn.execute(
                text(
                    "INSERT INTO keypairs (access_key, sealed_secret_key, user_id, is_active,"
                    " is_admin, created_at)"
                    " VALUES ('AKIAOLDOLDOLDOLDOLD0', 'sealed', :u, true, true, CURRENT_TIMESTAMP)"
                ),
                ids,
            )
        await migrate(engine, core.secrets)
        async with core.db() as db:
            keypair = await db.get(Keypair, "AKIAOLDOLDOLDOLDOLD0")
            user = await db.scalar(select(User).where(User.email == "old@example.com"))
            project = await db.scalar(select(Project).where(Project.name == "vision"))
            assert keypair and user and project
            assert (keypair.resource_policy, user.resource_policy, project.resource_policy) == (
                "default",
                "default",
                "default",
            )
            effective = await policies.effective_policy(db, keypair, project.id)
            assert [b.label for b in effective.bounds] == [
                "keypair resource policy 'default'",
                "user resource policy 'default'",
                "project resource policy 'default'",
            ]
            assert effective.refuses_scaling_group("default") is None
            assert effective.utilization == (0, 0, 0)  # migration 0011: the check stays off
            bound = effective.bounds[0]
            request = wire.Slots({"cpu": 512, "cuda.device": 8})
            assert bound.refuses(request, policies.Usage()) is None
            domains = await db.execute(text("SELECT domain_name FROM scaling_groups_for_domains"))
            assert {row[0] for row in domains} == {"lab"}
    finally:
        await engine.dispose()


async def test_the_strictest_of_keypair_user_and_project_applies(api: API) -> None:
    async with api.core.db() as db:
        db.add(
            ResourcePolicy(
                name="two-sessions",
                max_concurrent_sessions=2,
                idle_timeout=3600,
                total_resource_slots={"cuda.device": "1"},
                allowed_scaling_groups=["default", "gpu"],
            )
        )
        db.add(
            ResourcePolicy(
                name="strict-user",
                idle_timeout=600,
                max_session_lifetime=7200,
                default_for_unspecified="LIMITED",
                total_resource_slots={"cpu": "4", "mem": "8g"},
                allowed_scaling_groups=["default"],
            )
        )
        await db.flush()
        keypair = await db.get(Keypair, api.admin.access_key)
        assert keypair is not None
        keypair.resource_policy = "two-sessions"
        keypair.user.resource_policy = "strict-user"
        await db.commit()

        effective = await policies.effective_policy(db, keypair)
        assert effective.idle_timeout == 600  # the user's, stricter than the keypair's 3600
        assert effective.max_session_lifetime == 7200
        _, source = effective.strictest("idle_timeout")
        assert source is not None and source.label == "user resource policy 'strict-user'"
        assert effective.refuses_scaling_group("gpu") == (
            "user resource policy 'strict-user' does not allow the scaling group 'gpu'"
        )
        assert effective.refuses_image("any/image:1") is None

        keypair_bound, user_bound = effective.bounds
        two_running = policies.Usage(2, wire.Slots({"cpu": 2}))
        assert keypair_bound.refuses(wire.Slots({"cpu": 1}), two_running) == (
            "keypair resource policy 'two-sessions': at most 2 concurrent sessions"
        )
        one_gpu = policies.Usage(1, wire.Slots({"cuda.device": 1}))
        assert keypair_bound.refuses(wire.Slots({"cuda.device": 1}), one_gpu) == (
            "keypair resource policy 'two-sessions': at most cuda.device=1 in all"
            " (cuda.device=1 in use)"
        )
        # LIMITED: a slot the policy does not list may not be used at all
        assert user_bound.refuses(wire.Slots({"cuda.shares": "0.5"}), policies.Usage()) == (
            "user resource policy 'strict-user': at most cuda.shares=0 in all"
            " (cuda.shares=0 in use)"
        )
        assert user_bound.refuses(wire.Slots({"cpu": 4, "mem": "8g"}), policies.Usage()) is None


POLICY_FIELDS = (
    "name total_resource_slots max_concurrent_sessions max_vfolder_size idle_timeout"
    " allowed_scaling_groups"
)


async def test_policies_through_graphql_are_enforced_and_shown(api: API, node: FakeNode) -> None:
    create = (
        "mutation($name: String!, $input: CreateKeyPairResourcePolicyInput!) {"
        " create_keypair_resource_policy(name: $name, props: $input) {"
        " ok msg resource_policy { name } } }"
    )
    # what Backend.AI's `admin keypair-resource-policy add` sends (docs/backendai-api.md §13.3)
    props = {
        "default_for_unspecified": "UNLIMITED",
        "total_resource_slots": '{"cpu": "8", "cuda.shares": "2"}',
        "max_session_lifetime": 0,
        "max_concurrent_sessions": 2,
        "max_concurrent_sftp_sessions": 30,
        "max_containers_per_session": 1,
        "idle_timeout": 1800,
        "allowed_vfolder_hosts": '{"local:volume1": ["mount-in-session"]}',
    }
    created = await gql(api, create, {"name": "two", "input": props})
    assert created["data"]["create_keypair_resource_policy"] == {
        "ok": True,
        "msg": "",
        "resource_policy": {"name": "two"},
    }
    again = await gql(api, create, {"name": "two", "input": props})
    assert again["data"]["create_keypair_resource_policy"]["ok"] is False
    bad = await gql(api, create, {"name": "bad", "input": {"total_resource_slots": '{"gpu": 1}'}})
    assert bad["data"]["create_keypair_resource_policy"]["msg"] == (
        "total_resource_slots: unknown slot(s) gpu"
    )

    user = await user_keypair(api, "limited@example.com")
    assign = (
        "mutation($n: String!, $k: String) {"
        " set_resource_policy(name: $n, access_key: $k) { ok msg } }"
    )
    assigned = await gql(api, assign, {"n": "two", "k": user.access_key})
    assert assigned["data"]["set_resource_policy"] == {"ok": True, "msg": ""}
    denied = await gql(api, assign, {"n": "default", "k": user.access_key}, keypair=user)
    assert errors(denied) and "admin" in errors(denied)[0]

    # a user sees only the own keypair's policy; an admin all of them
    listing = f"query {{ keypair_resource_policies {{ {POLICY_FIELDS} }} }}"
    mine = (await gql(api, listing, keypair=user))["data"]["keypair_resource_policies"]
    assert mine == [
        {
            "name": "two",
            "total_resource_slots": '{"cpu": "8", "cuda.shares": "2"}',
            "max_concurrent_sessions": 2,
            "max_vfolder_size": 0,
            "idle_timeout": 1800,
            "allowed_scaling_groups": None,
        }
    ]
    everyone = (await gql(api, listing))["data"]["keypair_resource_policies"]
    assert [p["name"] for p in everyone] == ["default", "two"]

    for name in ("lim-1", "lim-2", "lim-3"):
        small = {"resources": {"cpu": "0.25", "mem": "64m"}}
        body = {"image": "python", "name": name, "enqueueOnly": True, "config": small}
        assert (await api.call("POST", "/session", body, keypair=user)).status == 201
    await _wait_for(api, "lim-3", lambda s: s.status_info != "enqueued")
    third = await api.call("GET", "/session/lim-3", keypair=user)
    assert third.body["status"] == "PENDING"
    assert third.body["statusInfo"] == (
        "waiting: keypair resource policy 'two': at most 2 concurrent sessions"
    )

    in_use = 'mutation { delete_keypair_resource_policy(name: "two") { ok msg } }'
    refused = (await gql(api, in_use))["data"]["delete_keypair_resource_policy"]
    assert refused == {"ok": False, "msg": "a keypair still has the policy 'two': move it first"}

    modify = (
        "mutation($n: String!, $p: ModifyKeyPairResourcePolicyInput!) {"
        " modify_keypair_resource_policy(name: $n, props: $p) { ok msg } }"
    )
    raised = await gql(api, modify, {"n": "two", "p": {"max_concurrent_sessions": 3}})
    assert raised["data"]["modify_keypair_resource_policy"] == {"ok": True, "msg": ""}
    await _wait_for(api, "lim-3", lambda s: s.status == "RUNNING")

    await gql(api, assign, {"n": "default", "k": user.access_key})
    removed = (await gql(api, in_use))["data"]["delete_keypair_resource_policy"]
    assert removed == {"ok": True, "msg": ""}


async def _wait_for(api: API, name: str, condition: Callable[[Session], bool]) -> None:
    """Wait, re-checking after each session event, until the session named `name` meets it."""
    async with api.core.events.subscribe() as events:
        with anyio.fail_after(15):
            while True:
                async with api.core.db() as db:
                    session = await db.scalar(select(Session).where(Session.name == name))
                    if session is not None and condition(session):
                        return
                with anyio.move_on_after(0.5):  # a commit before we subscribed
                    await events.receive()
