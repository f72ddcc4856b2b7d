"""Resource policies (issue 11 item 2): the tables, the migration that gives everything the
`default` policy, and `effective_policy`, the strictest of keypair, user and project."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

import wire
from controlplane import policies
from controlplane.config import ControlPlaneConfig
from controlplane.core import Core
from controlplane.db.engine import MIGRATIONS, create_engine, migrate
from controlplane.db.models import Keypair, Project, ResourcePolicy, User
from tests.controlplane.conftest import API

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
