"""Keypairs, users, domains, projects, scaling groups and resource policies through the official
SDK and CLI, and the 23.09 GraphQL fields clients select on sessions (docs/backendai-api.md §7,
§13, §16)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipyard.testing import TEST_IMAGE
from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker

SDK_LISTS = """
import json
from ai.backend.client.session import Session

with Session() as api:
    me = api.User.detail()
    print(json.dumps({
        "keypairs": api.KeyPair.list(),
        "users": api.User.list(),
        "me": api.User.detail_by_uuid(me["uuid"]),
        "groups": api.Group.list("default"),
        "domains": api.Domain.list(),
        "scaling_groups": api.ScalingGroup.list(),
        "policies": api.KeypairResourcePolicy.list(),
    }))
"""
# what a web client selects on a session: fields 23.09 serves besides the CLI's
SDK_SESSION_QUERY = """
import json, sys
from ai.backend.client.session import Session

query = '''query($id: UUID!) { compute_session(id: $id) {
  name session_name sess_id lang user_uuid user_id commit_status vfolder_mounts agents
  main_kernel_role architecture containers { kernel_id id local_rank agent_addr } } }'''
with Session() as api:
    print(json.dumps(api.Admin.query(query, {"id": sys.argv[1]})))
"""


def sdk(bai: BackendAI, code: str, *args: str) -> Any:
    result = bai.python(code.replace("sys.argv[1]", repr(args[0])) if args else code)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_sdk_lists_keypairs_users_projects_and_policies(bai: BackendAI) -> None:
    made = bai.api("POST", "/admin/keypairs", {"user": "tenant@example.com"})
    assert made.status_code == 201, made.text
    user_key = made.json()["accessKey"]
    try:
        listed = sdk(bai, SDK_LISTS)
    finally:
        bai.api("DELETE", f"/admin/keypairs/{user_key}")
    admin_key = bai.env()["BACKEND_ACCESS_KEY"]
    keys = {k["access_key"]: k for k in listed["keypairs"]}
    assert keys[admin_key]["user_id"] == "admin@shipyard.local"
    assert keys[admin_key]["is_admin"] is True
    assert keys[user_key]["user_id"] == "tenant@example.com"
    users = {u["email"]: u for u in listed["users"]}
    assert users["tenant@example.com"]["main_access_key"] == user_key
    assert users["admin@shipyard.local"]["role"] == "superadmin"
    assert listed["me"]["email"] == "admin@shipyard.local"
    [group] = listed["groups"]
    assert (group["name"], group["is_active"]) == ("default", True)
    assert [g["id"] for g in users["tenant@example.com"]["groups"]] == [group["id"]]
    [domain] = listed["domains"]
    assert (domain["name"], json.loads(domain["total_resource_slots"])) == ("default", {})
    [scaling_group] = listed["scaling_groups"]
    assert (scaling_group["name"], scaling_group["is_public"]) == ("default", True)
    [policy] = listed["policies"]
    assert policy["name"] == "default"
    assert policy["max_concurrent_sessions"] == 0  # no limit (0, as §16 says null crashes)
    assert policy["max_vfolder_size"] == 0


def test_cli_admin_group_domain_scaling_group_and_policy(bai: BackendAI) -> None:
    groups = bai.json("admin", "group", "list")
    assert [g["name"] for g in groups["items"]] == ["default"]
    [by_name] = bai.json("admin", "group", "info", "default")["items"]
    [by_id] = bai.json("admin", "group", "info", by_name["id"])["items"]
    assert by_id == by_name
    assert (by_name["name"], by_name["domain_name"]) == ("default", "default")
    domains = bai.json("admin", "domain", "list")
    assert [d["name"] for d in domains["items"]] == ["default"]
    [domain] = bai.json("admin", "domain", "info", "default")["items"]
    assert (domain["name"], domain["is_active"]) == ("default", True)
    [me] = bai.json("admin", "user", "info", "-e", "admin@shipyard.local")["items"]
    assert [g["name"] for g in me["groups"]] == ["default"]

    listed = bai.json("admin", "scaling-group", "list")
    [group] = listed["items"]
    assert (group["name"], group["driver"], group["scheduler"]) == ("default", "static", "fifo")
    [detail] = bai.json("admin", "scaling-group", "info", "default")["items"]
    assert detail["scheduler_opts"] == {"allowed_session_types": ["interactive", "batch"]}
    agents = bai.json("admin", "agent", "list", "--scaling-group", "default")
    assert bai.appliance.node_id in [a["id"] for a in agents["items"]]

    # the console formatter formats sizes: the policy's limits must be numbers (§16)
    console = bai("admin", "keypair-resource-policy", "list")
    assert console.returncode == 0, console.stderr
    header, _rule, row = console.stdout.splitlines()[:3]
    assert header.split()[0] == "Name"
    assert row.split()[0] == "default"
    [policy] = bai.json("admin", "keypair-resource-policy", "info", "default")["items"]
    assert policy["total_resource_slots"] == "{}"
    assert (policy["idle_timeout"], policy["max_containers_per_session"]) == (0, 1)


def test_a_user_sees_own_project_and_policy_but_no_scaling_groups(bai: BackendAI) -> None:
    made = bai.api("POST", "/admin/keypairs", {"user": "member@example.com"})
    assert made.status_code == 201, made.text
    user = {
        "BACKEND_ACCESS_KEY": made.json()["accessKey"],
        "BACKEND_SECRET_KEY": made.json()["secretKey"],
    }
    try:
        groups = bai.json("admin", "group", "list", **user)
        assert [g["name"] for g in groups["items"]] == ["default"]
        policies = bai.json("admin", "keypair-resource-policy", "list", **user)
        assert [p["name"] for p in policies["items"]] == ["default"]
        for command in (["admin", "scaling-group", "list"], ["admin", "domain", "list"]):
            refused = bai(*command, **user)
            assert refused.returncode == 1, (command, refused.stdout)
            assert "Insufficient privilege." in refused.stderr
    finally:
        bai.api("DELETE", f"/admin/keypairs/{user['BACKEND_ACCESS_KEY']}")


def test_session_fields_other_clients_select(bai: BackendAI) -> None:
    created = bai(
        "session", "create", "-t", "fields-1", "-r", "cpu=0.25", "-r", "mem=128m", "python"
    )
    assert created.returncode == 0, created.stderr
    session_id = bai.api("GET", "/session/fields-1").json()["sessionId"]
    session = sdk(bai, SDK_SESSION_QUERY, session_id)["compute_session"]
    assert session["session_name"] == session["sess_id"] == session["name"] == "fields-1"
    assert session["lang"] == TEST_IMAGE
    assert session["user_uuid"] == session["user_id"]
    assert (session["commit_status"], session["vfolder_mounts"]) == (None, [])
    assert session["agents"] == [bai.appliance.node_id]
    [container] = session["containers"]
    assert container["kernel_id"] == container["id"]
    assert (container["local_rank"], container["agent_addr"]) == (0, None)
    info = bai("session", "info", session_id)
    assert info.returncode == 0, info.stderr
