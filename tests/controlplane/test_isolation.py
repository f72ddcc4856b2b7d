"""Projects keep their virtual folders and node pools (scaling groups) to themselves (issue 11,
"done when"): a user of project A cannot see, use, mount or learn the names of project B's
folders and pools through REST, GraphQL, Shipyard's CLI or the official one, and a domain admin
reaches only its own domain. Every state-changing call made here, refused ones included, is in
the audit log with its actor, action, target and outcome. (Sessions: test_tenancy.py.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from controlplane.testing import FakeNode
from shipyard.cli import main
from tests.controlplane.conftest import API, Keypair, Response

pytestmark = pytest.mark.anyio
SMALL = {"cpu": "0.25", "mem": "64m"}


@dataclass
class Projects:
    """Two projects of the default domain (alice in proj-a, bob in proj-b), each with a
    folder; pool-b bound to proj-b only; the domain acme (admin: boss) with pool-acme."""

    api: API
    alice: Keypair = field(init=False)
    bob: Keypair = field(init=False)
    boss: Keypair = field(init=False)
    ids: dict[str, str] = field(default_factory=dict)  # project name -> id
    done: list[tuple[str, str, str]] = field(default_factory=list)  # actor, action, outcome

    async def act(self, by: Keypair | None, method: str, path: str, body: Any = None) -> Response:
        """A call, noted when it changes state."""
        keypair = by or self.api.admin
        response = await self.api.call(method, path, body, keypair=keypair)
        if method != "GET":
            outcome = "success" if response.status < 400 else "failure"
            self.done.append((keypair.access_key, f"{method} {path}", outcome))
        return response

    async def gql(self, by: Keypair | None, query: str, variables: Any = None) -> Any:
        body = {"query": query, "variables": variables or {}}
        response = await self.api.call("POST", "/admin/gql", body, keypair=by or self.api.admin)
        assert response.status == 200, response.body
        if query.lstrip().startswith("mutation"):
            field_name = query.split("{", 1)[1].split("(", 1)[0].strip()
            answer = response.body
            refused = answer.get("errors") or not answer["data"][field_name]["ok"]
            outcome = "failure" if refused else "success"
            self.done.append(((by or self.api.admin).access_key, f"graphql {field_name}", outcome))
        return response.body

    async def user(self, email: str, domain: str = "default", role: str = "user") -> Keypair:
        body = {"email": email, "role": role, "domain": domain}  # no password: no slow hash
        assert (await self.act(None, "POST", "/admin/users", body)).status == 201
        made = await self.act(
            None, "POST", "/admin/keypairs", {"user": email, "isAdmin": role != "user"}
        )
        assert made.status == 201, made.body
        return Keypair(made.body["accessKey"], made.body["secretKey"])

    async def pool(self, name: str, bind: str, value: str) -> None:
        made = await self.gql(
            None,
            'mutation($n: String!) { create_scaling_group(name: $n, props: {description: "x"})'
            " { ok msg scaling_group { name is_active } } }",
            {"n": name},
        )
        assert made["data"]["create_scaling_group"]["ok"], made
        argument = {"domain": ("domain", "String!"), "user_group": ("user_group", "UUID!")}[bind]
        bound = await self.gql(
            None,
            f"mutation($s: String!, $v: {argument[1]}) {{ associate_scaling_group_with_{bind}("
            f"scaling_group: $s, {argument[0]}: $v) {{ ok msg }} }}",
            {"s": name, "v": value},
        )
        assert bound["data"][f"associate_scaling_group_with_{bind}"]["ok"], bound


@pytest.fixture
async def projects(api: API, node: FakeNode) -> Projects:
    world = Projects(api)
    for name in ("proj-a", "proj-b"):
        made = await world.act(None, "POST", "/admin/projects", {"domain": "default", "name": name})
        assert made.status == 201, made.body
        world.ids[name] = made.body["id"]
    world.alice = await world.user("alice@example.com")
    world.bob = await world.user("bob@example.com")
    for project, email in (("proj-a", "alice"), ("proj-b", "bob")):
        path = f"/admin/projects/default/{project}/members/{email}@example.com"
        assert (await world.act(None, "PUT", path)).status == 200
    assert (await world.act(None, "POST", "/admin/domains", {"name": "acme"})).status == 201
    world.boss = await world.user("boss@acme.test", domain="acme", role="admin")
    await world.pool("pool-b", "user_group", world.ids["proj-b"])
    await world.pool("pool-acme", "domain", "acme")
    for by, body in (
        (world.bob, {"name": "b-data", "group": "proj-b"}),
        (world.bob, {"name": "bob-old"}),
        (world.alice, {"name": "a-data", "group": "proj-a"}),
    ):
        assert (await world.act(by, "POST", "/folders", body)).status == 201
    assert (await world.act(world.bob, "DELETE", "/folders/bob-old")).status == 204
    return world


def _same_answer(probe: Response, control: Response, name: str, fake: str) -> None:
    """Probing the other project's object answers exactly as probing nothing at all."""
    assert probe.status == control.status, (probe.body, control.body)
    assert json.dumps(probe.body).replace(name, fake) == json.dumps(control.body)


async def test_project_bs_folders_and_pools_are_out_of_reach_of_project_a(
    projects: Projects,
) -> None:
    w, alice = projects, projects.alice
    listed = await w.act(alice, "GET", "/folders")
    assert [f["name"] for f in listed.body] == ["a-data"]
    for method, suffix, body in (
        ("GET", "", None),
        ("POST", "/rename", {"new_name": "mine"}),
        ("POST", "/request-download", {"path": "x"}),
        ("POST", "/mkdir", {"path": "x"}),
        ("DELETE", "", None),
    ):
        probe = await w.act(alice, method, f"/folders/b-data{suffix}", body)
        control = await w.act(alice, method, f"/folders/no-data{suffix}", body)
        assert probe.status == 404
        _same_answer(probe, control, "b-data", "no-data")
    # a folder in project B, or one mounted from there: as if there were no such thing
    probe = await w.act(alice, "POST", "/folders", {"name": "x", "group": "proj-b"})
    control = await w.act(alice, "POST", "/folders", {"name": "x", "group": "proj-zz"})
    assert probe.status == 400
    _same_answer(probe, control, "proj-b", "proj-zz")
    mounted = [
        await w.act(alice, "POST", "/session", {"image": "python", "name": "a-job", "config": c})
        for c in ({"mounts": ["b-data"]}, {"mounts": ["no-data"]})
    ]
    assert (mounted[0].status, mounted[0].body["title"]) == (404, "No such virtual folder.")
    _same_answer(mounted[0], mounted[1], "b-data", "no-data")

    # pools: project A may use only its own; project B's is as unknown as no pool
    available = await w.act(alice, "GET", "/scaling-groups?group=proj-a")
    assert available.body == {"scaling_groups": [{"name": "default"}]}
    for ref in ("proj-b", w.ids["proj-b"]):
        refused = await w.act(alice, "GET", f"/scaling-groups?group={ref}")
        assert (refused.status, refused.body["msg"]) == (400, "Invalid group")
    outcomes = []
    for pool in ("pool-b", "pool-none"):
        body = {"image": "python", "name": "a-job", "group": "proj-a", "enqueueOnly": True}
        body["config"] = {"resources": SMALL, "scalingGroup": pool}
        outcomes.append(await w.act(alice, "POST", "/session", body))
    assert outcomes[0].status == 404
    _same_answer(outcomes[0], outcomes[1], "pool-b", "pool-none")
    assert (await w.act(alice, "GET", "/session")).body["items"] == []  # nothing half-made

    # GraphQL: the same folders only; pools are for admins
    folders = await w.gql(
        alice,
        "query($g: UUID) { vfolder_list(limit: 50, offset: 0, group_id: $g)"
        " { items { name } total_count } }",
    )
    assert folders["data"]["vfolder_list"] == {"items": [{"name": "a-data"}], "total_count": 1}
    in_b = await w.gql(
        alice,
        "query($g: UUID) { vfolder_list(limit: 50, offset: 0, group_id: $g) { total_count } }",
        {"g": w.ids["proj-b"]},
    )
    assert in_b["data"]["vfolder_list"]["total_count"] == 0
    pools = await w.gql(alice, '{ scaling_groups { name } scaling_group(name: "pool-b") { name } }')
    assert pools["data"] is None or pools["data"]["scaling_groups"] is None
    assert "Insufficient privilege" in json.dumps(pools["errors"])

    # project B's member does see and use them
    mine = await w.act(w.bob, "GET", f"/scaling-groups?group={w.ids['proj-b']}")
    assert mine.body == {"scaling_groups": [{"name": "default"}, {"name": "pool-b"}]}
    moved = await w.gql(
        None,
        'mutation { modify_agent(id: "i-fake", props: {scaling_group: "pool-b"}) { ok msg } }',
    )
    assert moved["data"]["modify_agent"] == {"ok": True, "msg": ""}
    body = {"image": "python", "name": "b-job", "group": "proj-b"}
    body["config"] = {"resources": SMALL, "scalingGroup": "pool-b", "mounts": ["b-data"]}
    started = await w.act(w.bob, "POST", "/session", body)
    assert (started.status, started.body["status"]) == (201, "RUNNING"), started.body

    # the audit log has every change tried above, refusals included, and what each was on
    targets = await _audit_has_everything(w)
    assert ("graphql create_scaling_group", "name=pool-b") in targets
    bind = f"scaling_group=pool-b; user_group={w.ids['proj-b']}"
    assert ("graphql associate_scaling_group_with_user_group", bind) in targets
    assert ("POST /folders/b-data/rename", "b-data") in targets
    assert ("POST /session", "a-job") in targets


async def test_a_domain_admin_reaches_only_its_domains_pools_and_trash(projects: Projects) -> None:
    w, boss = projects, projects.boss
    pools = await w.gql(
        boss, '{ scaling_groups { name } b: scaling_group(name: "pool-b") { name } }'
    )
    assert [p["name"] for p in pools["data"]["scaling_groups"]] == ["default", "pool-acme"]
    assert pools["data"]["b"] is None
    made = await w.gql(
        boss, 'mutation { create_scaling_group(name: "mine", props: {}) { ok msg } }'
    )
    assert "needs a superadmin" in json.dumps(made["errors"])
    refused = await w.act(boss, "GET", f"/scaling-groups?group={w.ids['proj-b']}")
    assert (refused.status, refused.body["msg"]) == (400, "Invalid group")
    # nodes run every domain's sessions and name their pools: a superadmin's business
    assert (await w.act(boss, "GET", "/nodes")).status == 403
    agents = await w.gql(boss, "{ agents { id scaling_group } }")
    assert "needs a superadmin" in json.dumps(agents["errors"])
    move = await w.gql(
        boss, 'mutation { modify_agent(id: "i-fake", props: {scaling_group: "pool-acme"}) { ok } }'
    )
    assert "needs a superadmin" in json.dumps(move["errors"])
    # a resource policy applies in every domain that uses it: changing one is a superadmin's
    for mutation in (
        'create_keypair_resource_policy(name: "mine", props: {max_concurrent_sessions: 9})',
        'modify_keypair_resource_policy(name: "default", props: {max_concurrent_sessions: 99})',
        'delete_keypair_resource_policy(name: "default")',
    ):
        refused_policy = await w.gql(boss, f"mutation {{ {mutation} {{ ok msg }} }}")
        assert "needs a superadmin" in json.dumps(refused_policy["errors"]), mutation

    trash = await w.act(None, "GET", "/folders/_/trash")
    [bob_old] = [f for f in trash.body["items"] if f["name"] == "bob-old"]
    assert (await w.act(boss, "GET", "/folders/_/trash")).body["items"] == []
    for method, suffix in (("POST", "/restore"), ("DELETE", "")):
        probe = await w.act(boss, method, f"/folders/_/trash/{bob_old['id']}{suffix}")
        assert probe.status == 404, probe.body
    # still there for the superadmin: the refusals changed nothing
    assert bob_old in (await w.act(None, "GET", "/folders/_/trash")).body["items"]
    await _audit_has_everything(w)
    own = await w.api.call("GET", f"/admin/audit?actor={boss.access_key}", keypair=boss)
    assert [(e["action"], e["outcome"]) for e in own.body["items"]] == [
        ("graphql create_scaling_group", "failure"),
        ("graphql modify_agent", "failure"),
        ("graphql create_keypair_resource_policy", "failure"),
        ("graphql modify_keypair_resource_policy", "failure"),
        ("graphql delete_keypair_resource_policy", "failure"),
        (f"POST /folders/_/trash/{bob_old['id']}/restore", "failure"),
        (f"DELETE /folders/_/trash/{bob_old['id']}", "failure"),
    ]


async def _audit_has_everything(w: Projects) -> set[tuple[str, str]]:
    """Every change `w` noted is in the audit log, in order, with a target; (action, target)
    of each entry."""
    listed = await w.api.call("GET", "/admin/audit")
    entries = listed.body["items"]
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == w.done
    assert all(e["target"] for e in entries), [e for e in entries if not e["target"]]
    targets = {(e["action"], e["target"]) for e in entries}
    # a domain admin reads its own domain's entries only
    own = await w.api.call("GET", "/admin/audit", keypair=w.boss)
    assert {e["domainName"] for e in own.body["items"]} <= {"acme"}
    return targets


@asynccontextmanager
async def served(api: API) -> AsyncIterator[str]:
    """The in-process control plane on a 127.0.0.1 port, for command-line clients."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        config = HypercornConfig()
        config.bind = [f"fd://{os.dup(listener.fileno())}"]  # hypercorn closes what it serves
        config.accesslog = None
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(partial(serve, api.app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
            try:
                yield f"http://127.0.0.1:{listener.getsockname()[1]}"
            finally:
                stop.set()


@dataclass
class Clients:
    endpoint: str
    workdir: Path

    async def shipyard(self, keypair: Keypair, *args: str) -> Result:
        """Shipyard's CLI as the keypair's owner (in a worker thread: it runs its own trio)."""
        env = {
            "SHIPYARD_ENDPOINT": self.endpoint,
            "SHIPYARD_ACCESS_KEY": keypair.access_key,
            "SHIPYARD_SECRET_KEY": keypair.secret_key,
        }
        return await anyio.to_thread.run_sync(partial(CliRunner().invoke, main, args, env=env))

    async def official(self, keypair: Keypair, *args: str) -> subprocess.CompletedProcess[str]:
        """The official client with only its BACKEND_* settings, from a folder without a .env
        (as tests/compat runs it)."""
        env = {
            "BACKEND_ENDPOINT": self.endpoint,
            "BACKEND_ACCESS_KEY": keypair.access_key,
            "BACKEND_SECRET_KEY": keypair.secret_key,
        }
        argv = [os.environ["SHIPYARD_TEST_BAI"], *args]
        run = partial(subprocess.run, argv, env=env, cwd=self.workdir, text=True, timeout=120)
        return await anyio.to_thread.run_sync(partial(run, capture_output=True))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # one database is enough
async def test_neither_cli_shows_or_uses_another_projects_folders_and_pools(
    projects: Projects, tmp_path: Path
) -> None:
    w, alice = projects, projects.alice
    async with served(w.api) as endpoint:
        clients = Clients(endpoint, tmp_path)
        listed = await clients.shipyard(alice, "vfolder", "ls")
        assert listed.exit_code == 0, listed.output
        assert "a-data" in listed.output and "b-data" not in listed.output
        info = await clients.shipyard(alice, "vfolder", "info", "b-data")
        assert info.exit_code == 1 and "not found or accessible" in info.output, info.output
        args = ("-g", "proj-a", "-r", "cpu=0.25", "-r", "mem=128m")
        sneaky = await clients.shipyard(
            alice, "session", "create", "-n", "cli-job", "--enqueue-only", *args, "-s", "pool-b"
        )
        assert sneaky.exit_code == 1 and "do not have access" in sneaky.output, sneaky.output
        w.done.append((alice.access_key, "POST /session", "failure"))
        pools = await clients.shipyard(w.boss, "admin", "scaling-group", "ls")
        assert pools.exit_code == 0, pools.output
        assert "pool-acme" in pools.output and "pool-b" not in pools.output
        denied = await clients.shipyard(alice, "admin", "scaling-group", "ls")
        assert denied.exit_code == 1 and "needs an admin keypair" in denied.output, denied.output

        if not os.environ.get("SHIPYARD_TEST_BAI"):
            return  # tests/compat/conftest.py says how to get the official client; CI has it
        listed = await clients.official(alice, "--output", "json", "vfolder", "list")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert [f["name"] for f in json.loads(listed.stdout)["items"]] == ["a-data"]
        pools = await clients.official(alice, "admin", "scaling-group", "get-available", "proj-b")
        assert pools.returncode != 0 and "Invalid group" in pools.stdout + pools.stderr, pools
        create = ("session", "create", "-t", "bai-job", *args, "--scaling-group", "pool-b")
        sneaky_bai = await clients.official(alice, *create, "python")
        assert sneaky_bai.returncode != 0, sneaky_bai.stdout
        assert "do not have access" in sneaky_bai.stdout + sneaky_bai.stderr
        w.done.append((alice.access_key, "POST /session", "failure"))
        mine = await clients.official(w.bob, "admin", "scaling-group", "get-available", "proj-b")
        assert mine.returncode == 0 and "pool-b" in mine.stdout, mine.stdout + mine.stderr
    await _audit_has_everything(w)
