"""`backend.ai admin agent/image/keypair/user ...` and the authentication errors, seen through
the real client (docs/backendai-api.md §3, §5, §6.4)."""

from __future__ import annotations

import json
import subprocess

import pytest

from shipyard.testing import TEST_IMAGE
from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker

STALE_CLOCK = """
import sys
from datetime import datetime, timedelta

import ai.backend.client.request as request


class StaleClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) - timedelta(minutes=20)


request.datetime = StaleClock  # the client dates (and signs) every request with this
from ai.backend.cli.__main__ import main

sys.argv = ["backend.ai", "admin", "image", "list"]
main()
"""


def test_agent_list_and_info_show_the_node_and_its_slots(bai: BackendAI) -> None:
    created = bai(
        "session", "create", "-t", "holder-1", "-r", "cpu=0.5", "-r", "mem=256m", "python"
    )
    assert created.returncode == 0, created.stderr
    listed = bai.json("admin", "agent", "list")
    [agent] = [a for a in listed["items"] if a["id"] == bai.appliance.node_id]
    assert listed["total_count"] == listed["count"] >= 1
    assert agent["status"] == "ALIVE"
    assert agent["scaling_group"] == "default"
    assert set(agent["available_slots"]) == {"cpu", "mem"}
    assert float(agent["available_slots"]["cpu"]) >= 1
    # the formatter decoded the JSON strings; mem_cur_bytes (MiB here) was a number
    assert agent["occupied_slots"] == {"cpu": "0.5", "mem": str(256 * 2**20)}
    assert isinstance(agent["mem_cur_bytes"], float)
    assert isinstance(agent["cpu_cur_pct"], float)

    console = bai("admin", "agent", "list")
    assert console.returncode == 0, console.stderr
    header, _rule, *rows = console.stdout.splitlines()
    assert header.split()[:3] == ["ID", "Status", "Architecture"]
    assert any(r.split()[:2] == [bai.appliance.node_id, "ALIVE"] for r in rows)
    lost = bai.json("admin", "agent", "list", "--status", "LOST")
    assert bai.appliance.node_id not in [a["id"] for a in lost["items"]]

    info = bai("admin", "agent", "info", bai.appliance.node_id)
    assert info.returncode == 0, info.stderr
    assert "Status           ALIVE" in info.stdout
    assert "Occupied Slots   cpu:0.5, mem:256.0M" in info.stdout


def test_image_list_alias_and_dealias(bai: BackendAI) -> None:
    repository, tag = TEST_IMAGE.rsplit(":", 1)
    images = bai.json("admin", "image", "list")["items"]
    [image] = [i for i in images if (i["name"], i["tag"]) == (repository, tag)]
    assert "python" in image["aliases"]
    assert image["registry"] == "local"
    assert image["digest"].startswith("sha256:")

    added = bai("admin", "image", "alias", "compat-py", TEST_IMAGE)
    assert added.returncode == 0, added.stderr
    assert f"An alias has created: compat-py -> {TEST_IMAGE}" in added.stderr
    images = bai.json("admin", "image", "list")["items"]
    assert "compat-py" in next(i["aliases"] for i in images if i["name"] == repository)
    ran = bai("run", "--rm", "-r", "cpu=0.25", "-r", "mem=128m", "compat-py", "-c", "print(1)")
    assert (ran.returncode, ran.stdout) == (0, "1\n"), ran.stderr

    removed = bai("admin", "image", "dealias", "compat-py")
    assert removed.returncode == 0, removed.stderr
    assert "The alias has been removed: compat-py" in removed.stderr
    missing = bai("admin", "image", "dealias", "compat-py")
    assert missing.returncode == 1
    assert "No such environment image." in missing.stderr
    unknown = bai("admin", "image", "alias", "compat-py", "no/such:image")
    assert unknown.returncode == 1
    assert "No such environment image." in unknown.stderr


def test_keypair_and_user_lists(bai: BackendAI) -> None:
    keypairs = bai.json("admin", "keypair", "list")
    admin_key = bai.env()["BACKEND_ACCESS_KEY"]
    [admin] = [k for k in keypairs["items"] if k["access_key"] == admin_key]
    assert (admin["user_id"], admin["is_admin"], admin["is_active"]) == (
        "admin@shipyard.local",
        True,
        True,
    )
    assert keypairs["total_count"] == keypairs["count"]
    own = bai("admin", "keypair", "info")
    assert own.returncode == 0, own.stderr
    assert admin_key in own.stdout
    users = bai.json("admin", "user", "list")
    [user] = [u for u in users["items"] if u["email"] == "admin@shipyard.local"]
    assert (user["role"], user["status"], user["main_access_key"]) == (
        "superadmin",
        "active",
        admin_key,
    )
    assert [g["name"] for g in user["groups"]] == ["default"]


def test_a_user_sees_own_things_and_is_refused_admin_ones(bai: BackendAI) -> None:
    made = bai.api("POST", "/admin/keypairs", {"user": "compat-user@example.com"})
    assert made.status_code == 201, made.text
    user = {
        "BACKEND_ACCESS_KEY": made.json()["accessKey"],
        "BACKEND_SECRET_KEY": made.json()["secretKey"],
    }
    admins = bai(
        "session", "create", "-t", "admins-own", "-r", "cpu=0.25", "-r", "mem=128m", "python"
    )
    assert admins.returncode == 0, admins.stderr
    assert bai.json("ps", **user) == {"count": 0, "total_count": 0, "items": []}
    empty = bai("ps", **user)  # console mode, stdout not a tty: the client's NoItems quirk
    assert empty.returncode == 1
    assert "NoItems" in empty.stderr
    for command in (
        ["admin", "agent", "list"],
        ["admin", "user", "list"],
        ["admin", "image", "alias", "mine", TEST_IMAGE],
        ["admin", "keypair", "list", "-u", "admin@shipyard.local"],
    ):
        refused = bai(*command, **user)
        assert refused.returncode == 1, (command, refused.stdout)
        assert "GraphQL-generated error" in refused.stderr
        assert "Insufficient privilege." in refused.stderr
    own = bai.json("admin", "keypair", "list", **user)
    assert [k["access_key"] for k in own["items"]] == [user["BACKEND_ACCESS_KEY"]]
    assert bai.api("DELETE", f"/admin/keypairs/{user['BACKEND_ACCESS_KEY']}").status_code == 200


def _problem_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.strip() for line in result.stderr.splitlines() if line.strip()]


def test_bad_signature_wrong_key_and_stale_date(bai: BackendAI) -> None:
    bad_signature = bai("admin", "image", "list", BACKEND_SECRET_KEY="not-the-secret-key")
    assert bad_signature.returncode == 1
    assert _problem_lines(bad_signature)[:3] == [
        "✘ BackendAPIError: 401",
        "Credential/signature mismatch.",
        "➜ Message: Signature mismatch",
    ]
    wrong_key = bai("admin", "image", "list", BACKEND_ACCESS_KEY="AKIANOSUCHKEY0000000")
    assert wrong_key.returncode == 1
    assert _problem_lines(wrong_key)[:3] == [
        "✘ BackendAPIError: 401",
        "Credential/signature mismatch.",
        "➜ Message: Unknown or inactive access key",
    ]
    stale = bai.python(STALE_CLOCK)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    lines = _problem_lines(stale)
    assert lines[:2] == ["✘ BackendAPIError: 400", "Missing or invalid authorization parameters."]
    assert lines[2].startswith("➜ Message: Date/time sync error")

    # the bodies behind those lines, as the document specifies them
    denied = bai.api("GET", "/manager/announcement", BACKEND_SECRET_KEY="not-the-secret-key")
    assert denied.status_code == 401
    assert denied.headers["content-type"] == "application/problem+json"
    assert json.loads(denied.text) == {
        "type": "https://api.backend.ai/probs/auth-failed",
        "title": "Credential/signature mismatch.",
        "msg": "Signature mismatch",
    }
    assert bai.api("GET", "/manager/announcement").json() == {"enabled": False, "message": ""}
