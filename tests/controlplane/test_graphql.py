"""POST /admin/gql with the exact queries the official client sends (docs/backendai-api.md
§6.2, §6.4, §7): pagination, key order, JSON strings, null variables, permissions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlplane.testing import TEST_IMAGE, FakeNode
from tests.controlplane.conftest import API, Keypair

pytestmark = pytest.mark.anyio

KEYPAIR_QUERY = "query {  keypair {    user_id access_key secret_key is_active is_admin  }}"
PS_QUERY = (
    "query($limit:Int!, $offset:Int!, $status: String, $access_key: String, $filter: String,"
    " $order: String) {\n  compute_session_list(\n      limit:$limit, offset:$offset,"
    " status:$status, access_key:$access_key, filter:$filter, order:$order) {\n"
    "    items { name access_key id group_name main_kernel_id image type status status_info"
    " status_changed result }\n    total_count\n  }\n}"
)
PS_FIELDS = [
    "name",
    "access_key",
    "id",
    "group_name",
    "main_kernel_id",
    "image",
    "type",
    "status",
    "status_info",
    "status_changed",
    "result",
]
ACTIVE = "PENDING,SCHEDULED,PULLING,PREPARING,RUNNING,RUNNING_DEGRADED,TERMINATING,ERROR"
INFO_QUERY = (
    "query($id: UUID!) {  compute_session(id: $id) {    name id main_kernel_id image tag"
    " created_at terminated_at status status_info status_data occupying_slots idle_checks"
    " containers { id cluster_role cluster_idx cluster_hostname session_id image registry"
    " status status_info status_data status_changed agent container_id resource_opts"
    " occupied_slots preopen_ports live_stat last_stat id } dependencies { name id }  }}"
)
AGENTS_QUERY = (
    "query($limit:Int!, $offset:Int!, $status: String, $scaling_group: String, $filter: String,"
    " $order: String) {\n  agent_list(\n      limit:$limit, offset:$offset, status:$status,"
    " scaling_group:$scaling_group, filter:$filter, order:$order) {\n    items { id status"
    " architecture scaling_group region first_contact cpu_cur_pct mem_cur_bytes"
    " available_slots occupied_slots }\n    total_count\n  }\n}"
)
IMAGES_QUERY = (
    "query($is_operation: Boolean) {  images(is_operation: $is_operation) {    name registry"
    " architecture tag digest size_bytes aliases  }}"
)
ALIAS = (
    "mutation($alias: String!, $target: String!) {  alias_image(alias: $alias, target: $target)"
    " {   ok msg  }}"
)
DEALIAS = "mutation($alias: String!) {  dealias_image(alias: $alias) {   ok msg  }}"
USERS_QUERY = (
    "query($limit:Int!, $offset:Int!, $status: String, $group_id: UUID, $filter: String,"
    " $order: String) {\n  user_list(\n      limit:$limit, offset:$offset, status:$status,"
    " group_id:$group_id, filter:$filter, order:$order) {\n    items { uuid username role email"
    " full_name groups { id name } main_access_key }\n    total_count\n  }\n}"
)
KEYPAIRS_QUERY = (
    "query($limit:Int!, $offset:Int!, $is_active: Boolean, $domain_name: String, $filter:"
    " String, $order: String) {\n  keypair_list(\n      limit:$limit, offset:$offset,"
    " is_active:$is_active, domain_name:$domain_name, filter:$filter, order:$order) {\n"
    "    items { user_id user_info { full_name } access_key is_admin concurrency_used }\n"
    "    total_count\n  }\n}"
)


async def gql(
    api: API, query: str, variables: dict[str, Any] | None = None, keypair: Any = None
) -> dict[str, Any]:
    response = await api.call(
        "POST", "/admin/gql", {"query": query, "variables": variables or {}}, keypair=keypair
    )
    assert response.status == 200, response.body  # GraphQL errors too come with 200
    assert response.content_type.startswith("application/json")
    body: dict[str, Any] = response.body
    return body


def ps_vars(**overrides: Any) -> dict[str, Any]:
    variables: dict[str, Any] = {
        "status": ACTIVE,
        "access_key": None,
        "filter": None,
        "order": None,
        "limit": 20,
        "offset": 0,
    }
    variables.update(overrides)
    return variables


def agent_vars(**overrides: Any) -> dict[str, Any]:
    variables: dict[str, Any] = {
        "status": "ALIVE",
        "scaling_group": None,
        "filter": None,
        "order": None,
        "limit": 20,
        "offset": 0,
    }
    variables.update(overrides)
    return variables


async def user_keypair(api: API, email: str) -> Keypair:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    return Keypair(access_key=created.body["accessKey"], secret_key=created.body["secretKey"])


async def create(api: API, name: str, keypair: Any = None) -> str:
    body = {"image": "python", "name": name, "config": {"resources": {"cpu": "0.25", "mem": "64m"}}}
    created = await api.call("POST", "/session", body, keypair=keypair)
    assert created.status == 201, created.body
    session_id: str = created.body["sessionId"]
    return session_id


def errors(body: dict[str, Any]) -> list[str]:
    return [e["message"] for e in body.get("errors", [])]


async def test_own_keypair_is_what_ps_asks_first(api: API) -> None:
    body = await gql(api, KEYPAIR_QUERY)
    keypair = body["data"]["keypair"]
    assert list(keypair) == ["user_id", "access_key", "secret_key", "is_active", "is_admin"]
    assert keypair["access_key"] == api.admin.access_key
    assert keypair["is_admin"] is True
    user = await user_keypair(api, "user@example.com")
    mine = (await gql(api, KEYPAIR_QUERY, keypair=user))["data"]["keypair"]
    assert (mine["access_key"], mine["user_id"], mine["is_admin"]) == (
        user.access_key,
        "user@example.com",
        False,
    )


async def test_session_list_pages_agree_with_total_and_follow_the_selection(
    api: API, node: FakeNode
) -> None:
    ids = [await create(api, f"page-{i}") for i in range(5)]
    seen: list[str] = []
    offset = 0
    while True:
        page = await gql(api, PS_QUERY, ps_vars(limit=2, offset=offset))
        result = page["data"]["compute_session_list"]
        assert result["total_count"] == 5
        assert result["items"], "a page before the total must not be empty"
        for item in result["items"]:
            assert list(item) == PS_FIELDS  # the console table matches cells by key order
        seen += [item["id"] for item in result["items"]]
        offset += len(result["items"])
        if offset >= result["total_count"]:
            break
    assert sorted(seen) == sorted(ids)
    assert seen == list(reversed(ids))  # newest first
    first = (await gql(api, PS_QUERY, ps_vars()))["data"]["compute_session_list"]["items"][0]
    assert first["status"] == "RUNNING"
    assert first["type"] == "INTERACTIVE"
    assert first["image"] == TEST_IMAGE
    assert first["group_name"] == "default"
    assert first["result"] == "UNDEFINED"
    assert first["access_key"] == api.admin.access_key


async def test_status_filter_order_and_null_variables(api: API, node: FakeNode) -> None:
    await create(api, "keep-b")
    await create(api, "keep-a")
    await create(api, "gone-c")
    assert (await api.call("DELETE", "/session/gone-c")).status == 200

    def names(body: dict[str, Any]) -> list[str]:
        assert "errors" not in body, body
        return [i["name"] for i in body["data"]["compute_session_list"]["items"]]

    assert names(await gql(api, PS_QUERY, ps_vars())) == ["keep-a", "keep-b"]
    assert names(await gql(api, PS_QUERY, ps_vars(status="CANCELLED,TERMINATED"))) == ["gone-c"]
    assert len(names(await gql(api, PS_QUERY, ps_vars(status=None)))) == 3
    assert names(await gql(api, PS_QUERY, ps_vars(order="+name"))) == ["keep-a", "keep-b"]
    assert names(await gql(api, PS_QUERY, ps_vars(order="-created_at"))) == ["keep-a", "keep-b"]
    assert names(await gql(api, PS_QUERY, ps_vars(order="created_at"))) == ["keep-b", "keep-a"]
    filtered = ps_vars(status=None, filter='status == "RUNNING" & name != "keep-a"')
    assert names(await gql(api, PS_QUERY, filtered)) == ["keep-b"]
    listed = ps_vars(status=None, filter="name in ['gone-c', 'keep-a']", order="name")
    assert names(await gql(api, PS_QUERY, listed)) == ["gone-c", "keep-a"]
    # the client sends the declared variables with null values: all of them are "no filter"
    bare = {"limit": 20, "offset": 0, "status": None, "access_key": None}
    assert len(names(await gql(api, PS_QUERY, {**bare, "filter": None, "order": None}))) == 3


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"filter": 'colour == "red"'}, "cannot filter on 'colour'"),
        ({"filter": 'status ~= "RUNNING"'}, "cannot read the filter"),
        ({"filter": "status == RUNNING"}, "is not a value"),
        ({"filter": 'status == "RUNNING" |'}, "cannot read the filter"),
        ({"order": "colour"}, "cannot order by 'colour'"),
        ({"limit": 0}, "limit must be between 1 and 100"),
        ({"limit": 101}, "limit must be between 1 and 100"),
        ({"offset": -1}, "offset must be 0 or more"),
    ],
)
async def test_unsupported_list_arguments_are_clear_errors(
    api: API, overrides: dict[str, Any], expected: str
) -> None:
    body = await gql(api, PS_QUERY, ps_vars(**overrides))
    assert body["data"] == {"compute_session_list": None}
    [message] = errors(body)
    assert expected in message
    assert body["errors"][0]["path"] == ["compute_session_list"]


async def test_session_info_query_with_its_duplicate_id_and_json_strings(
    api: API, node: FakeNode
) -> None:
    session_id = await create(api, "info-1")
    body = await gql(api, INFO_QUERY, {"id": session_id})
    assert "errors" not in body, body
    session = body["data"]["compute_session"]
    assert session["id"] == session_id
    assert session["status"] == "RUNNING"
    assert json.loads(session["occupying_slots"]) == {"cpu": "0.25", "mem": str(64 * 2**20)}
    assert json.loads(session["status_data"]) == {}
    assert json.loads(session["idle_checks"]) == {}
    assert session["dependencies"] == []
    [container] = session["containers"]
    assert container["id"] == session["main_kernel_id"]
    assert list(container)[-1] == "last_stat"  # the repeated `id` is merged into the first
    assert container["agent"] == "i-fake"
    assert container["cluster_role"] == "main"
    assert json.loads(container["occupied_slots"]) == json.loads(session["occupying_slots"])
    missing = await gql(api, INFO_QUERY, {"id": "00000000-0000-4000-8000-000000000000"})
    assert missing == {"data": {"compute_session": None}}
    bad = await gql(api, INFO_QUERY, {"id": "not-a-uuid"})
    assert "not a UUID" in errors(bad)[0]


async def test_users_see_only_their_own_sessions(api: API, node: FakeNode) -> None:
    user = await user_keypair(api, "user@example.com")
    admins = await create(api, "admins-1")
    mine = await create(api, "users-1", keypair=user)
    listed = (await gql(api, PS_QUERY, ps_vars(), keypair=user))["data"]["compute_session_list"]
    assert [i["id"] for i in listed["items"]] == [mine]
    assert listed["total_count"] == 1
    everyone = (await gql(api, PS_QUERY, ps_vars()))["data"]["compute_session_list"]
    assert everyone["total_count"] == 2  # an admin sees every owner's sessions
    only_users = ps_vars(access_key=user.access_key)
    listed = (await gql(api, PS_QUERY, only_users))["data"]["compute_session_list"]
    assert [i["id"] for i in listed["items"]] == [mine]
    denied = await gql(api, PS_QUERY, ps_vars(access_key=api.admin.access_key), keypair=user)
    assert "Insufficient privilege" in errors(denied)[0]
    assert (await gql(api, INFO_QUERY, {"id": admins}, keypair=user))["data"] == {
        "compute_session": None
    }
    seen_by_admin = await gql(api, INFO_QUERY, {"id": mine})
    assert seen_by_admin["data"]["compute_session"]["name"] == "users-1"


async def test_agent_list_shows_slots_as_json_strings(api: API, node: FakeNode) -> None:
    await create(api, "holds-1")
    body = await gql(api, AGENTS_QUERY, agent_vars())
    result = body["data"]["agent_list"]
    assert result["total_count"] == 1
    [agent] = result["items"]
    assert list(agent) == [
        "id",
        "status",
        "architecture",
        "scaling_group",
        "region",
        "first_contact",
        "cpu_cur_pct",
        "mem_cur_bytes",
        "available_slots",
        "occupied_slots",
    ]
    assert (agent["id"], agent["status"], agent["scaling_group"]) == ("i-fake", "ALIVE", "default")
    assert agent["mem_cur_bytes"] == 0  # never null: the client divides it
    assert json.loads(agent["available_slots"]) == {"cpu": "2", "mem": str(4 * 2**30)}
    assert json.loads(agent["occupied_slots"]) == {"cpu": "0.25", "mem": str(64 * 2**20)}
    lost = await gql(api, AGENTS_QUERY, agent_vars(status="LOST"))
    assert lost["data"]["agent_list"] == {"items": [], "total_count": 0}
    everyone = await gql(api, AGENTS_QUERY, agent_vars(status=None, filter='id == "i-fake"'))
    assert everyone["data"]["agent_list"]["total_count"] == 1
    detail = await gql(
        api,
        "query($agent_id: String!) { agent(agent_id: $agent_id) { id status live_stat } }",
        {"agent_id": "i-fake"},
    )
    assert detail["data"]["agent"] == {"id": "i-fake", "status": "ALIVE", "live_stat": None}


async def test_images_and_alias_mutations(api: API, node: FakeNode) -> None:
    images = (await gql(api, IMAGES_QUERY, {"is_operation": False}))["data"]["images"]
    assert images == [
        {
            "name": "shipyard-test/python",
            "registry": "local",
            "architecture": "x86_64",
            "tag": "3.11",
            "digest": "sha256:test",
            "size_bytes": 1000,
            "aliases": ["python"],
        }
    ]
    assert (await gql(api, IMAGES_QUERY, {"is_operation": True}))["data"]["images"] == []
    added = await gql(api, ALIAS, {"alias": "py", "target": TEST_IMAGE})
    assert added == {"data": {"alias_image": {"ok": True, "msg": ""}}}
    images = (await gql(api, IMAGES_QUERY, {"is_operation": False}))["data"]["images"]
    assert images[0]["aliases"] == ["py", "python"]
    assert (await api.call("POST", "/session", {"image": "py", "name": "via-alias"})).status == 201
    removed = await gql(api, DEALIAS, {"alias": "py"})
    assert removed == {"data": {"dealias_image": {"ok": True, "msg": ""}}}
    again = await gql(api, DEALIAS, {"alias": "py"})
    assert "No such environment image" in errors(again)[0]
    unknown = await gql(api, ALIAS, {"alias": "py", "target": "no/such:image"})
    assert "No such environment image" in errors(unknown)[0]
    invalid = await gql(api, ALIAS, {"alias": "has space", "target": TEST_IMAGE})
    assert invalid["data"]["alias_image"]["ok"] is False


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (AGENTS_QUERY, agent_vars()),
        (USERS_QUERY, {"limit": 20, "offset": 0}),
        ('query { agent(agent_id: "i-fake") { id } }', {}),
        ("query { agents { id } }", {}),
        ("query { users { email } }", {}),
        ("query { domains { name } }", {}),
        ("query { scaling_groups { name } }", {}),
        ('query { scaling_group(name: "default") { name } }', {}),
        (ALIAS, {"alias": "py", "target": TEST_IMAGE}),
        (DEALIAS, {"alias": "python"}),
    ],
)
async def test_admin_queries_refuse_users_in_a_200_body(
    api: API, node: FakeNode, query: str, variables: dict[str, Any]
) -> None:
    user = await user_keypair(api, "user@example.com")
    body = await gql(api, query, variables, keypair=user)
    [message] = errors(body)
    assert message.startswith("Insufficient privilege.")
    assert "admin" in message
    assert body["errors"][0]["extensions"]["type"] == "insufficient-privilege"
    assert list(body["data"].values()) == [None]


async def test_keypair_and_user_lists(api: API, node: FakeNode) -> None:
    user = await user_keypair(api, "user@example.com")
    await user_keypair(api, "other@example.com")
    await create(api, "busy-1", keypair=user)
    keypairs = (await gql(api, KEYPAIRS_QUERY, {"limit": 20, "offset": 0}))["data"]
    items = keypairs["keypair_list"]["items"]
    assert keypairs["keypair_list"]["total_count"] == len(items) == 3
    assert items[0]["user_id"] == "admin@shipyard.local"
    assert items[0]["user_info"] == {"full_name": None}
    busy = {i["access_key"]: i["concurrency_used"] for i in items}
    assert busy[user.access_key] == 1
    own = (await gql(api, KEYPAIRS_QUERY, {"limit": 20, "offset": 0}, keypair=user))["data"]
    assert [i["access_key"] for i in own["keypair_list"]["items"]] == [user.access_key]
    admins_only = await gql(
        api, KEYPAIRS_QUERY, {"limit": 20, "offset": 0, "filter": "is_admin == true"}
    )
    assert admins_only["data"]["keypair_list"]["total_count"] == 1

    users = (await gql(api, USERS_QUERY, {"limit": 2, "offset": 0}))["data"]["user_list"]
    assert users["total_count"] == 3
    assert len(users["items"]) == 2
    rest = (await gql(api, USERS_QUERY, {"limit": 2, "offset": 2}))["data"]["user_list"]
    emails = [u["email"] for u in users["items"] + rest["items"]]
    assert emails == ["admin@shipyard.local", "user@example.com", "other@example.com"]
    assert users["items"][1]["main_access_key"] == user.access_key
    assert users["items"][0]["role"] == "superadmin"
    assert users["items"][0]["groups"][0]["name"] == "default"
    inactive = await gql(api, USERS_QUERY, {"limit": 20, "offset": 0, "status": "inactive"})
    assert inactive["data"]["user_list"] == {"items": [], "total_count": 0}


async def test_malformed_queries_are_errors_in_a_200_body(api: API) -> None:
    syntax = await gql(api, "query { keypair { ")
    assert "Syntax Error" in errors(syntax)[0]
    unknown = await gql(api, "query { nothing_here }")
    assert "Cannot query field 'nothing_here'" in errors(unknown)[0]
    missing = await gql(api, PS_QUERY, {"offset": 0})
    assert "$limit" in errors(missing)[0]
    # a body that is no GraphQL request at all is refused like any route's bad body
    raw = await api.call("POST", "/admin/gql", [1, 2])
    assert raw.status == 400
    assert raw.body["type"].endswith("/invalid-api-params")
    assert "body" in raw.body["data"]
    named = await api.call(
        "POST",
        "/admin/gql",
        {
            "query": "query A { keypair { is_admin } } query B { images { name } }",
            "operation_name": "A",
        },
    )
    assert named.body == {"data": {"keypair": {"is_admin": True}}}
