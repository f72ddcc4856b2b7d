"""Roles, projects, sign-in and resource presets through the official client (issue 11 items 1,
3, 8; docs/backendai-api.md §13.1, §13.2, §13.4). Runs after test_tenancy.py, which expects the
appliance to have only the `default` project."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker

SDK_PRESETS = """
import json
from ai.backend.client.session import Session

with Session() as api:
    print(json.dumps({"list": api.Resource.list(), "check": api.Resource.check_presets()}))
"""


def shipyard(bai: BackendAI, *args: str, **keys: str) -> subprocess.CompletedProcess[str]:
    """Shipyard's own CLI against the same appliance, as the user with these keys (its
    SHIPYARD_* variables win over BACKEND_* ones)."""
    mine = {k.replace("BACKEND_", "SHIPYARD_"): v for k, v in keys.items()}
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        env={**bai.appliance.env(), **mine},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _keys(made: httpx.Response) -> dict[str, str]:
    assert made.status_code == 201, made.text
    return {
        "BACKEND_ACCESS_KEY": made.json()["accessKey"],
        "BACKEND_SECRET_KEY": made.json()["secretKey"],
    }


def test_users_projects_and_sign_in_through_the_official_client(bai: BackendAI) -> None:
    made = bai.api("POST", "/admin/users", {"email": "lab@example.com", "password": "lab password"})
    assert made.status_code == 201, made.text
    assert bai.api("POST", "/admin/projects", {"domain": "default", "name": "lab"}).is_success
    assert bai.api("PUT", "/admin/projects/default/lab/members/lab@example.com").is_success
    member = _keys(bai.api("POST", "/admin/keypairs", {"user": "lab@example.com"}))
    outsider = _keys(bai.api("POST", "/admin/keypairs", {"user": "outsider@example.com"}))
    try:
        users = {u["email"]: u for u in bai.json("admin", "user", "list")["items"]}
        assert users["lab@example.com"]["status"] == "active"
        assert sorted(g["name"] for g in users["lab@example.com"]["groups"]) == ["default", "lab"]
        mine = bai.json("admin", "group", "list", **member)
        assert sorted(g["name"] for g in mine["items"]) == ["default", "lab"]
        theirs = bai.json("admin", "group", "list", **outsider)
        assert [g["name"] for g in theirs["items"]] == ["default"]

        # -g puts the session in the project; a non-member is refused
        args = ("session", "create", "-r", "cpu=0.25", "-r", "mem=128m", "-g", "lab")
        created = bai(*args, "-t", "lab-job", "python", **member)
        assert created.returncode == 0, created.stdout + created.stderr
        info = bai.api("GET", "/session/lab-job", **member).json()
        assert info["groupId"] == next(g["id"] for g in mine["items"] if g["name"] == "lab")
        refused = bai(*args, "-t", "outsider-job", "python", **outsider)
        assert refused.returncode != 0
        assert "Invalid group" in refused.stdout + refused.stderr

        # Shipyard's CLI: the outsider cannot see or name the lab's session either
        info = shipyard(bai, "session", "info", "lab-job", **outsider)
        assert info.returncode == 1 and "does not exist" in info.stderr, info.stdout
        listed = shipyard(bai, "session", "ls", **outsider)
        assert listed.returncode == 0 and "lab-job" not in listed.stdout
        assert "lab-job" in shipyard(bai, "session", "ls", **member).stdout
        users_out = shipyard(bai, "admin", "user", "ls", "--status", "active").stdout
        [lab_user] = [line for line in users_out.splitlines() if "lab@example.com" in line]
        assert lab_user.split()[1:4] == ["user", "active", "default"]
        assert "default" in shipyard(bai, "admin", "domain", "ls").stdout.split()
        projects = shipyard(bai, "admin", "project", "ls")
        assert projects.returncode == 0, projects.stderr
        [lab] = [line for line in projects.stdout.splitlines() if " lab " in line]
        assert "lab@example.com" in lab
        audit = shipyard(bai, "admin", "audit", "--action", "/admin/projects", "--json-lines")
        entries = [json.loads(line) for line in audit.stdout.splitlines()]
        assert {(e["action"], e["outcome"]) for e in entries} >= {
            ("POST /admin/projects", "success"),
            ("PUT /admin/projects/default/lab/members/lab@example.com", "success"),
        }, entries

        # sign-in answers the keypair the client then signs with
        signed = httpx.post(
            bai.env()["BACKEND_ENDPOINT"] + "/auth/authorize",
            json={"type": "keypair", "username": "lab@example.com", "password": "lab password"},
            timeout=30,
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["data"]["access_key"] == member["BACKEND_ACCESS_KEY"]
    finally:
        bai.api("DELETE", "/session/lab-job", **member)  # the module's appliance is shared
        for keys in (member, outsider):
            bai.api("DELETE", f"/admin/keypairs/{keys['BACKEND_ACCESS_KEY']}")


def test_sdk_lists_resource_presets_and_which_fit(bai: BackendAI) -> None:
    for name, slots in (
        ("compat-small", {"cpu": "0.25", "mem": "64m"}),
        ("compat-huge", {"cpu": "512"}),
    ):
        made = bai.api("POST", "/admin/presets", {"name": name, "resourceSlots": slots})
        assert made.status_code == 201, made.text
    try:
        result = bai.python(SDK_PRESETS)
        assert result.returncode == 0, result.stdout + result.stderr
        listed = json.loads(result.stdout.splitlines()[-1])
        names = [p["name"] for p in listed["list"]["presets"]]
        assert names == ["compat-huge", "compat-small"]
        fits = {p["name"]: p["allocatable"] for p in listed["check"]["presets"]}
        assert fits == {"compat-huge": False, "compat-small": True}
        assert listed["check"]["keypair_limits"]["cpu"] == "Infinity"
        table = shipyard(bai, "admin", "preset", "ls", "--check")
        assert table.returncode == 0, table.stderr
        rows = {line.split()[0]: line.split()[-1] for line in table.stdout.splitlines()[1:]}
        assert (rows["compat-small"], rows["compat-huge"]) == ("True", "False")
    finally:
        for name in ("compat-small", "compat-huge"):
            bai.api("DELETE", f"/admin/presets/{name}")
