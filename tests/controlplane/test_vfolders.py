"""Virtual folders through the API (issue 13): hosts, folders, trash, clone, permissions,
sharing, and mounts as the control plane records and sends them (a fake node; the real node
and Docker are in tests/node/test_vfolder_mounts.py, the official client in tests/compat)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from controlplane.db.models import DEFAULT_POLICY, ResourcePolicy
from controlplane.testing import FakeNode
from controlplane.vfolders import StorageHost
from tests.controlplane.conftest import API, Keypair

pytestmark = pytest.mark.anyio


async def user(api: API, email: str) -> Keypair:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    return Keypair(created.body["accessKey"], created.body["secretKey"])


async def folder(
    api: API, name: str, keypair: Keypair | None = None, **more: Any
) -> dict[str, Any]:
    created = await api.call(
        "POST", "/folders", {"name": name, "host": "local:volume1", **more}, keypair=keypair
    )
    assert created.status == 201, created.body
    return dict(created.body)


def folder_dir(api: API, folder_id: str) -> Path:
    return api.core.vfolder_hosts.get("local:volume1").root / folder_id


def slug(body: Any) -> str:
    return str(body.get("type", "")).rsplit("/", 1)[-1]


async def test_hosts_say_capacity_and_quota_mode(api: API) -> None:
    hosts = await api.call("GET", "/folders/_/hosts")
    assert hosts.status == 200
    assert (hosts.body["default"], hosts.body["allowed"]) == ("local:volume1", ["local:volume1"])
    info = hosts.body["volume_info"]["local:volume1"]
    assert info["quota_mode"] == "accounted"
    assert "project quotas" in info["quota_mode_reason"], info  # why, e.g. not mounted so
    assert info["usage"]["capacity_bytes"] > info["usage"]["used_bytes"] > 0
    assert isinstance(info["project_quota_capable"], bool)
    types = await api.call("GET", "/folders/_/allowed_types")
    assert types.body == ["user", "group"]


async def test_create_list_info_rename(api: API) -> None:
    alice, bob = await user(api, "alice@example.com"), await user(api, "bob@example.com")
    created = await folder(api, "data", alice, quota="10m")
    assert (created["name"], created["max_size"], created["ownership_type"]) == ("data", 10, "user")
    assert created["creator"] == "alice@example.com"
    path = folder_dir(api, created["id"])
    assert path.is_dir() and path.stat().st_uid == api.core.config.vfolder_uid
    await folder(api, "data", bob)  # two users may both have `data`
    again = await api.call("POST", "/folders", {"name": "data"}, keypair=alice)
    assert (again.status, slug(again.body)) == (400, "vfolder-already-exists")
    for bad in ("a/b", "..", "", "x" * 65, "_", "spaced name"):
        refused = await api.call("POST", "/folders", {"name": bad}, keypair=alice)
        assert refused.status == 400, bad
    listed = await api.call("GET", "/folders", keypair=alice)
    assert [(f["name"], f["is_owner"], f["permission"]) for f in listed.body] == [
        ("data", True, "rw")
    ]
    info = await api.call("GET", "/folders/data", keypair=alice)
    assert (info.body["numFiles"], info.body["type"], info.body["id"]) == (0, "user", created["id"])
    renamed = await api.call("POST", "/folders/data/rename", {"new_name": "data2"}, keypair=alice)
    assert renamed.status == 200
    assert (await api.call("GET", "/folders/data2", keypair=alice)).status == 200
    gone = await api.call("GET", "/folders/data", keypair=alice)
    assert (gone.status, gone.body["title"]) == (404, "No such virtual folder.")


async def test_no_access_without_a_share(api: API) -> None:
    alice, bob = await user(api, "alice@example.com"), await user(api, "bob@example.com")
    await folder(api, "private", alice)
    for method, path, body in [
        ("GET", "/folders/private", None),
        ("GET", "/folders/private/files", {"path": "."}),
        ("POST", "/folders/private/request-upload", {"path": "x", "size": 1}),
        ("POST", "/folders/private/request-download", {"path": "x"}),
        ("DELETE", "/folders/private", None),
        ("POST", "/folders/private/clone", {"target_name": "mine"}),
    ]:
        got = await api.call(method, path, body, keypair=bob)
        assert (got.status, got.body["title"]) == (404, "No such virtual folder."), path
    listed = await api.call("GET", "/folders", keypair=bob)
    assert listed.body == []


async def test_trash_restore_purge(api: API) -> None:
    alice = await user(api, "alice@example.com")
    created = await folder(api, "old", alice)
    assert (await api.call("DELETE", "/folders/old", keypair=alice)).status == 204
    assert (await api.call("GET", "/folders/old", keypair=alice)).status == 404
    assert folder_dir(api, created["id"]).is_dir()  # kept in the trash
    refused = await api.call("GET", "/folders/_/trash", keypair=alice)
    assert refused.status == 403
    trash = await api.call("GET", "/folders/_/trash")
    assert [i["name"] for i in trash.body["items"]] == ["old"]
    await folder(api, "old", alice)  # the name is free again...
    clash = await api.call("POST", f"/folders/_/trash/{created['id']}/restore")
    assert (clash.status, slug(clash.body)) == (400, "vfolder-already-exists")  # ...so no restore
    assert (await api.call("DELETE", "/folders/old", keypair=alice)).status == 204
    trash = await api.call("GET", "/folders/_/trash")
    second = next(i["id"] for i in trash.body["items"] if i["id"] != created["id"])
    assert (await api.call("POST", f"/folders/_/trash/{created['id']}/restore")).status == 200
    assert (await api.call("GET", "/folders/old", keypair=alice)).body["id"] == created["id"]
    assert (await api.call("DELETE", f"/folders/_/trash/{second}")).status == 204
    assert not folder_dir(api, second).exists()
    again = await api.call("DELETE", f"/folders/_/trash/{second}")
    assert again.status == 404


async def test_clone_copies_files(api: API) -> None:
    alice, bob = await user(api, "alice@example.com"), await user(api, "bob@example.com")
    source = await folder(api, "src", alice, cloneable=True)
    root = folder_dir(api, source["id"])
    (root / "sub").mkdir()
    (root / "sub" / "a.txt").write_bytes(b"hello")
    os.symlink("/etc/passwd", root / "link")
    # bob cannot reach it (no share): cloneable is not public
    assert (
        await api.call("POST", "/folders/src/clone", {"target_name": "c"}, keypair=bob)
    ).status == 404
    cloned = await api.call("POST", "/folders/src/clone", {"target_name": "copy"}, keypair=alice)
    assert cloned.status == 201, cloned.body
    copy = folder_dir(api, cloned.body["id"])
    assert (copy / "sub" / "a.txt").read_bytes() == b"hello"
    assert not (copy / "link").exists() and not (copy / "link").is_symlink()
    assert (copy / "sub" / "a.txt").stat().st_uid == api.core.config.vfolder_uid


async def test_invitations_and_permissions(api: API) -> None:
    alice, bob = await user(api, "alice@example.com"), await user(api, "bob@example.com")
    carol = await user(api, "carol@example.com")
    await folder(api, "shared", alice)
    invited = await api.call(
        "POST",
        "/folders/shared/invite",
        {"perm": "ro", "user_ids": ["bob@example.com"]},
        keypair=alice,
    )
    assert (invited.status, invited.body) == (201, {"invited_ids": ["bob@example.com"]})
    listed = await api.call("GET", "/folders/invitations/list", keypair=bob)
    [inv] = listed.body["invitations"]
    assert (inv["inviter"], inv["perm"], inv["vfolder_name"]) == (
        "alice@example.com",
        "ro",
        "shared",
    )
    # a third party can neither accept nor delete it
    for method, path in [("POST", "accept"), ("DELETE", "delete")]:
        got = await api.call(
            method, f"/folders/invitations/{path}", {"inv_id": inv["id"]}, keypair=carol
        )
        assert got.status == 404
    accepted = await api.call(
        "POST", "/folders/invitations/accept", {"inv_id": inv["id"]}, keypair=bob
    )
    assert (accepted.status, accepted.body) == (200, {})
    [item] = (await api.call("GET", "/folders", keypair=bob)).body
    assert (item["name"], item["is_owner"], item["permission"]) == ("shared", False, "ro")
    # ro: reading works, writing does not
    assert (
        await api.call("GET", "/folders/shared/files", {"path": "."}, keypair=bob)
    ).status == 200
    write = await api.call("POST", "/folders/shared/mkdir", {"path": "d"}, keypair=bob)
    assert (write.status, slug(write.body)) == (403, "vfolder-permission-denied")
    delete = await api.call("DELETE", "/folders/shared", keypair=bob)
    assert delete.status == 403
    # bob may not take others' access away; alice revokes his
    other = await api.call(
        "DELETE", "/folders/shared/unshare", {"emails": ["bob@example.com"]}, keypair=bob
    )
    assert other.status == 403
    revoked = await api.call(
        "DELETE", "/folders/shared/unshare", {"emails": ["bob@example.com"]}, keypair=alice
    )
    assert revoked.body == {"unshared_emails": ["bob@example.com"]}
    assert (await api.call("GET", "/folders", keypair=bob)).body == []
    # invited again, bob leaves on his own; an invitation alice cancels is gone for carol
    await api.call(
        "POST", "/folders/shared/invite", {"user_ids": ["bob@example.com"]}, keypair=alice
    )
    [inv] = (await api.call("GET", "/folders/invitations/list", keypair=bob)).body["invitations"]
    await api.call("POST", "/folders/invitations/accept", {"inv_id": inv["id"]}, keypair=bob)
    assert (await api.call("POST", "/folders/shared/leave", {}, keypair=bob)).status == 200
    assert (await api.call("GET", "/folders", keypair=bob)).body == []
    await api.call(
        "POST", "/folders/shared/invite", {"user_ids": ["carol@example.com"]}, keypair=alice
    )
    [inv] = (await api.call("GET", "/folders/invitations/list", keypair=alice)).body["invitations"]
    cancel = await api.call(
        "DELETE", "/folders/invitations/delete", {"inv_id": inv["id"]}, keypair=alice
    )
    assert cancel.status == 200
    assert (await api.call("GET", "/folders/invitations/list", keypair=carol)).body == {
        "invitations": []
    }


async def test_project_folders_and_admin_share(api: API) -> None:
    alice, bob = await user(api, "alice@example.com"), await user(api, "bob@example.com")
    await folder(api, "team", alice, group="default", permission="ro")
    [item] = (await api.call("GET", "/folders", keypair=bob)).body
    assert (item["name"], item["ownership_type"], item["permission"]) == ("team", "group", "ro")
    # a user may not share; the admin (a member of the project too) gives bob wd
    assert (
        await api.call(
            "POST", "/folders/team/share", {"emails": ["bob@example.com"]}, keypair=alice
        )
    ).status == 403
    shared = await api.call(
        "POST", "/folders/team/share", {"permission": "wd", "emails": ["bob@example.com"]}
    )
    assert (shared.status, shared.body) == (201, {"shared_emails": ["bob@example.com"]})
    [item] = (await api.call("GET", "/folders", keypair=bob)).body
    assert item["permission"] == "wd"
    unshared = await api.call("DELETE", "/folders/team/unshare", {"emails": ["bob@example.com"]})
    assert unshared.body == {"unshared_emails": ["bob@example.com"]}
    assert (await api.call("GET", "/folders", keypair=bob)).body[0]["permission"] == "ro"
    # a project folder is deleted by those with wd on it, or an admin; not by its creator alone
    refused = await api.call("DELETE", "/folders/team", keypair=alice)
    assert (refused.status, slug(refused.body)) == (403, "vfolder-permission-denied")
    assert (await api.call("DELETE", "/folders/team")).status == 204


async def test_policy_limits(api: API) -> None:
    alice = await user(api, "alice@example.com")
    async with api.core.db() as db:  # alice's user policy (`default`, as everyone's here)
        policy = await db.get(ResourcePolicy, DEFAULT_POLICY)
        assert policy is not None
        policy.max_vfolder_count, policy.max_vfolder_size = 1, 2**20
        await db.commit()
    created = await folder(api, "one", alice)
    assert created["max_size"] == 1  # MiB: the policy's size when none was asked
    second = await api.call("POST", "/folders", {"name": "two"}, keypair=alice)
    assert (second.status, slug(second.body)) == (413, "vfolder-quota-exceeded")
    assert (await api.call("DELETE", "/folders/one", keypair=alice)).status == 204
    big = await api.call("POST", "/folders", {"name": "big", "quota": "2m"}, keypair=alice)
    assert (big.status, slug(big.body)) == (413, "vfolder-quota-exceeded")


async def test_mounts_sent_to_the_node_and_deletion_refused_while_in_use(
    api: API, node: FakeNode
) -> None:
    alice = await user(api, "alice@example.com")
    data = await folder(api, "data", alice)
    ref = await folder(api, "ref", alice, permission="ro")
    dot = await folder(api, ".cache", alice)
    proj = await folder(api, "proj", alice)
    made = await api.call(
        "POST", "/folders/proj/mkdir", {"path": "a/b", "parents": True}, keypair=alice
    )
    assert made.status == 201, made.body
    body = {
        "image": "python",
        "name": "with-mounts",
        "config": {
            "mounts": ["data", "ref", "proj/a/b"],
            "mount_map": {"ref": "refs/v1"},
            "mount_options": {"proj/a/b": {"permission": "ro"}},
        },
    }
    created = await api.call("POST", "/session", body, keypair=alice)
    assert created.status == 201, created.body
    root = api.core.vfolder_hosts.get("local:volume1").root
    mounts = {(m.source, m.target, m.read_only, m.subpath) for m in node.creates[-1].mounts}
    assert mounts == {
        (str(root / data["id"]), "/home/work/data", False, ""),
        (str(root / ref["id"]), "/home/work/refs/v1", True, ""),
        (str(root / dot["id"]), "/home/work/.cache", False, ""),  # dot folders come unasked
        (str(root / proj["id"]), "/home/work/proj/a/b", True, "a/b"),  # a folder inside one
    }
    refused = await api.call("DELETE", "/folders/data", keypair=alice)
    assert (refused.status, slug(refused.body)) == (409, "vfolder-in-use")
    assert "with-mounts" in refused.body["msg"]
    assert (await api.call("DELETE", "/session/with-mounts", keypair=alice)).status == 200
    assert (await api.call("DELETE", "/folders/data", keypair=alice)).status == 204


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"mounts": ["nope"]}, "not found or accessible"),
        ({"mounts": ["data"], "mount_map": {"data": "/etc"}}, "reserved"),
        ({"mounts": ["data"], "mount_map": {"data": "/opt/shipyard"}}, "reserved"),
        ({"mounts": ["data"], "mount_map": {"data": "../x"}}, "reserved"),
        ({"mounts": ["data"], "mount_map": {"data": ".bashrc"}}, "reserved"),
        ({"mount_map": {"data": "same", "ref": "same"}}, "Duplicate"),
        ({"mount_map": {"data": "ref", "ref": "x"}}, "existing folder name"),
        ({"mount_map": {"data": "a", "ref": "a/b"}}, "overlap"),
    ],
)
async def test_bad_mounts_are_refused_and_nothing_is_created(
    api: API, node: FakeNode, config: dict[str, Any], says: str
) -> None:
    alice = await user(api, "alice@example.com")
    await folder(api, "data", alice)
    await folder(api, "ref", alice)
    body = {"image": "python", "name": "bad-mounts", "config": config}
    refused = await api.call("POST", "/session", body, keypair=alice)
    assert refused.status in (400, 404), refused.body
    assert says in refused.body["msg"]
    assert (await api.call("GET", "/session", keypair=alice)).body["items"] == []


async def test_folders_inside_folders_that_cannot_be_mounted(api: API, node: FakeNode) -> None:
    alice = await user(api, "alice@example.com")
    data = folder_dir(api, (await folder(api, "data", alice))["id"])
    (data / "sub").mkdir()
    (data / "link").symlink_to("/etc")  # as a session may leave one
    (data / "file").write_text("x")
    for mounts, says in [
        (["data/missing"], "does not exist"),
        (["data/../etc"], "leaves the folder"),
        (["data//etc"], "absolute"),
        (["data/link"], "symbolic link"),
        (["data/link/ssl"], "symbolic link"),
        (["data/file"], "symbolic link or a file"),
        (["data", "data/sub"], "mounted twice"),
    ]:
        body = {"image": "python", "name": "bad-mounts", "config": {"mounts": mounts}}
        refused = await api.call("POST", "/session", body, keypair=alice)
        assert refused.status in (400, 404), (mounts, refused.body)
        assert says in refused.body["msg"], (mounts, refused.body)
    assert (await api.call("GET", "/session", keypair=alice)).body["items"] == []


async def test_another_users_folder_cannot_be_mounted(api: API, node: FakeNode) -> None:
    alice, bob = await user(api, "alice@example.com"), await user(api, "bob@example.com")
    await folder(api, "secret", alice)
    body = {"image": "python", "name": "steal", "config": {"mounts": ["secret"]}}
    refused = await api.call("POST", "/session", body, keypair=bob)
    assert (refused.status, refused.body["title"]) == (404, "No such virtual folder.")


VFOLDER_LIST = (
    "query($limit:Int!, $offset:Int!, $group_id: UUID, $filter: String, $order: String) {\n"
    "  vfolder_list(\n      limit:$limit, offset:$offset, group_id:$group_id, filter:$filter,"
    " order:$order) {\n    items { host name created_at creator group permission ownership_type"
    " status }\n    total_count\n  }\n}"
)


async def test_graphql_vfolder_list_as_the_client_asks(api: API) -> None:
    alice, bob = await user(api, "alice@example.com"), await user(api, "bob@example.com")
    await folder(api, "b-data", alice)
    await folder(api, "a-team", alice, group="default", permission="ro")
    await folder(api, "bobs", bob)
    variables = {"group_id": None, "filter": None, "order": None, "limit": 20, "offset": 0}
    got = await api.call(
        "POST", "/admin/gql", {"query": VFOLDER_LIST, "variables": variables}, keypair=alice
    )
    listed = got.body["data"]["vfolder_list"]
    assert listed["total_count"] == 2
    assert [
        (i["name"], i["permission"], i["ownership_type"], i["creator"], i["status"])
        for i in listed["items"]
    ] == [
        ("a-team", "ro", "group", "alice@example.com", "ready"),
        ("b-data", "rw", "user", "alice@example.com", "ready"),
    ]
    paged = {
        **variables,
        "limit": 1,
        "offset": 1,
        "order": "-name",
        "filter": 'host == "local:volume1"',
    }
    got = await api.call(
        "POST", "/admin/gql", {"query": VFOLDER_LIST, "variables": paged}, keypair=alice
    )
    assert [i["name"] for i in got.body["data"]["vfolder_list"]["items"]] == ["a-team"]


def test_without_project_quotas_a_host_says_why_and_accounts(tmp_path: Path) -> None:
    host = StorageHost("plain", tmp_path / "vfolders")
    host.prepare()
    if host.quota_mode == "project":
        pytest.skip(f"{tmp_path} has project quotas")
    assert host.no_project_quota  # the reason (logged when the mount has prjquota)
    folder_id = uuid.uuid4()
    host.make_folder(folder_id, os.getuid(), 1 << 20)
    assert host.folder_path(folder_id).is_dir()
