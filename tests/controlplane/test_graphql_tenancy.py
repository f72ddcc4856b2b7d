"""The GraphQL queries the official SDK (23.9.10) sends for keypairs, users, domains, projects,
scaling groups and resource policies (docs/backendai-api.md §13), with the values that come
from Shipyard's own data, and the older fields clients still select on sessions and nodes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlplane.testing import TEST_IMAGE, FakeNode
from tests.controlplane.conftest import API
from tests.controlplane.test_graphql import create, errors, gql, user_keypair

pytestmark = pytest.mark.anyio

# what KeyPair.list(), User.list(), Group.list(), Domain.list(), ScalingGroup.list() and
# KeypairResourcePolicy.list() send, with their default fields
SDK_KEYPAIRS = (
    "query($is_active: Boolean) {  keypairs(is_active: $is_active) {"
    "    user_id access_key secret_key is_active is_admin created_at  }}"
)
SDK_USERS = (
    "query($status: String, $group: UUID) {\n    users(status: $status, group_id: $group)"
    " {uuid role username email need_password_change status status_info is_active created_at"
    " domain_name groups { id name } allowed_client_ip totp_activated sudo_session_enabled"
    " main_access_key}\n}\n"
)
SDK_GROUPS = (
    "query($domain_name: String) {\n    groups(domain_name: $domain_name)"
    " {id name is_active created_at integration_id}\n}\n"
)
SDK_DOMAINS = (
    "query {\n    domains {name description is_active created_at total_resource_slots"
    " allowed_vfolder_hosts allowed_docker_registries integration_id}\n}\n"
)
SDK_SCALING_GROUPS = (
    "query($is_active: Boolean) {\n    scaling_groups(is_active: $is_active) {\n"
    "        name description is_active is_public created_at driver scheduler"
    " use_host_network wsproxy_addr wsproxy_api_token\n    }\n}\n"
)
SDK_POLICIES = (
    "query {  keypair_resource_policies {    name created_at total_resource_slots"
    " max_concurrent_sessions max_vfolder_count max_vfolder_size idle_timeout"
    " max_containers_per_session allowed_vfolder_hosts  }}"
)
USER_FROM_UUID = (
    "query($user_id: ID) {\n    user_from_uuid(user_id: $user_id) {uuid email role}\n}\n"
)


def data(body: dict[str, Any]) -> Any:
    assert "errors" not in body, body["errors"]
    [value] = body["data"].values()
    return value


async def test_sdk_keypair_and_user_lists(api: API, node: FakeNode) -> None:
    user = await user_keypair(api, "user@example.com")
    keypairs = data(await gql(api, SDK_KEYPAIRS, {"is_active": None}))
    assert [k["user_id"] for k in keypairs] == ["admin@shipyard.local", "user@example.com"]
    assert list(keypairs[0]) == [
        "user_id",
        "access_key",
        "secret_key",
        "is_active",
        "is_admin",
        "created_at",
    ]
    assert keypairs[1]["access_key"] == user.access_key
    own = data(await gql(api, SDK_KEYPAIRS, {"is_active": None}, keypair=user))
    assert [k["access_key"] for k in own] == [user.access_key]
    by_email = "query($email: String!) { keypairs(email: $email) { access_key } }"
    assert data(await gql(api, by_email, {"email": "user@example.com"})) == [
        {"access_key": user.access_key}
    ]
    refused = await gql(api, by_email, {"email": "admin@shipyard.local"}, keypair=user)
    assert "Insufficient privilege" in errors(refused)[0]

    users = data(await gql(api, SDK_USERS, {"status": None, "group": None}))
    assert [(u["email"], u["role"], u["status"]) for u in users] == [
        ("admin@shipyard.local", "superadmin", "active"),
        ("user@example.com", "user", "active"),
    ]
    assert users[0]["main_access_key"] == api.admin.access_key
    assert users[1]["main_access_key"] == user.access_key
    [project] = users[0]["groups"]
    assert project["name"] == "default"
    in_project = await gql(api, SDK_USERS, {"status": "active", "group": project["id"]})
    assert len(data(in_project)) == 2
    nowhere = {"status": None, "group": "00000000-0000-4000-8000-000000000000"}
    assert data(await gql(api, SDK_USERS, nowhere)) == []
    assert data(await gql(api, SDK_USERS, {"status": "inactive", "group": None})) == []

    me = data(await gql(api, USER_FROM_UUID, {"user_id": users[1]["uuid"]}, keypair=user))
    assert me == {"uuid": users[1]["uuid"], "email": "user@example.com", "role": "user"}
    other = await gql(api, USER_FROM_UUID, {"user_id": users[0]["uuid"]}, keypair=user)
    assert "Insufficient privilege" in errors(other)[0]
    assert data(await gql(api, USER_FROM_UUID, {"user_id": users[1]["uuid"]}))["email"] == (
        "user@example.com"
    )
    assert "not a UUID" in errors(await gql(api, USER_FROM_UUID, {"user_id": "nope"}))[0]

    assert (await api.call("DELETE", f"/admin/keypairs/{user.access_key}")).status == 200
    assert data(await gql(api, SDK_KEYPAIRS, {"is_active": False})) == [
        {**keypairs[1], "is_active": False}
    ]
    users = data(await gql(api, SDK_USERS, {"status": None, "group": None}))
    assert users[1]["main_access_key"] is None  # its only keypair is deactivated


async def test_domains_and_projects(api: API) -> None:
    user = await user_keypair(api, "user@example.com")
    [domain] = data(await gql(api, SDK_DOMAINS))
    assert domain["name"] == "default"
    assert domain["is_active"] is True
    assert json.loads(domain["total_resource_slots"]) == {}  # no limit beyond the nodes
    assert (domain["allowed_docker_registries"], domain["integration_id"]) == ([], None)
    own = "{ domain { name created_at scaling_groups } }"
    assert data(await gql(api, own, keypair=user)) == {
        "name": "default",
        "created_at": domain["created_at"],
        "scaling_groups": ["default"],
    }
    another = await gql(api, '{ domain(name: "other") { name } }', keypair=user)
    assert "Insufficient privilege" in errors(another)[0]
    assert data(await gql(api, '{ domain(name: "other") { name } }')) is None

    [group] = data(await gql(api, SDK_GROUPS, {"domain_name": None}, keypair=user))
    assert (group["name"], group["is_active"], group["integration_id"]) == ("default", True, None)
    assert data(await gql(api, SDK_GROUPS, {"domain_name": "default"})) == [group]
    assert data(await gql(api, SDK_GROUPS, {"domain_name": "other"})) == []
    by_id = "query($gid: UUID!) { group(id: $gid) { id name domain_name resource_policy } }"
    assert data(await gql(api, by_id, {"gid": group["id"]}, keypair=user)) == {
        "id": group["id"],
        "name": "default",
        "domain_name": "default",
        "resource_policy": "default",
    }
    missing = {"gid": "00000000-0000-4000-8000-000000000000"}
    assert data(await gql(api, by_id, missing)) is None
    by_name = "query($name: String!) { groups_by_name(name: $name) { id } }"
    assert data(await gql(api, by_name, {"name": "default"})) == [{"id": group["id"]}]
    assert data(await gql(api, by_name, {"name": "nope"})) == []


async def test_scaling_group_and_resource_policy_say_what_is_enforced(
    api: API, node: FakeNode
) -> None:
    user = await user_keypair(api, "user@example.com")
    [group] = data(await gql(api, SDK_SCALING_GROUPS, {"is_active": None}))
    assert (group["name"], group["is_active"], group["is_public"]) == ("default", True, True)
    assert (group["wsproxy_addr"], group["use_host_network"]) == (None, False)
    detail = '{ scaling_group(name: "default") { name scheduler_opts driver_opts } }'
    opts = data(await gql(api, detail))
    assert json.loads(opts["scheduler_opts"]) == {"allowed_session_types": ["interactive", "batch"]}
    assert json.loads(opts["driver_opts"]) == {}
    assert data(await gql(api, '{ scaling_group(name: "gpu") { name } }')) is None
    assert data(await gql(api, '{ scaling_groups(name: "gpu") { name } }')) == []
    refused = await gql(api, SDK_SCALING_GROUPS, {"is_active": None}, keypair=user)
    assert "Insufficient privilege" in errors(refused)[0]
    # every node is in it
    in_group = '{ agents(scaling_group: "default") { id scaling_group } }'
    assert data(await gql(api, in_group)) == [{"id": "i-fake", "scaling_group": "default"}]

    for keypair in (None, user):
        [policy] = data(await gql(api, SDK_POLICIES, keypair=keypair))
        assert policy["name"] == "default"
        # no limit beyond the nodes: Backend.AI's "unlimited" values, numbers where the
        # client formats numbers
        assert json.loads(policy["total_resource_slots"]) == {}
        assert policy["max_concurrent_sessions"] == 0  # 0: no limit, as for every count
        assert (policy["max_vfolder_count"], policy["max_vfolder_size"]) == (0, 0)
        assert (policy["idle_timeout"], policy["max_containers_per_session"]) == (0, 1)
    single = "{ keypair_resource_policy { name default_for_unspecified max_session_lifetime } }"
    assert data(await gql(api, single, keypair=user)) == {
        "name": "default",
        "default_for_unspecified": "UNLIMITED",
        "max_session_lifetime": 0,
    }
    own = "{ keypair { resource_policy concurrency_limit } }"
    assert data(await gql(api, own, keypair=user)) == {
        "resource_policy": "default",
        "concurrency_limit": None,
    }


async def test_older_session_and_node_fields_come_from_the_same_data(
    api: API, node: FakeNode
) -> None:
    user = await user_keypair(api, "user@example.com")
    session_id = await create(api, "legacy-1", keypair=user)
    query = (
        "query($id: UUID!) { compute_session(id: $id) { name user_id user_uuid session_name"
        " sess_id lang image architecture registry commit_status vfolder_mounts agents agent_ids"
        " main_kernel_id main_kernel_role inference_metrics"
        " containers { id kernel_id local_rank agent_addr abusing_report } } }"
    )
    session = data(await gql(api, query, {"id": session_id}, keypair=user))
    assert session["user_uuid"] == session["user_id"]
    assert session["session_name"] == session["sess_id"] == session["name"] == "legacy-1"
    assert session["lang"] == session["image"] == TEST_IMAGE
    assert (session["architecture"], session["registry"]) == ("x86_64", "local")
    assert (session["commit_status"], session["vfolder_mounts"]) == (None, [])
    assert session["agents"] == session["agent_ids"] == ["i-fake"]
    assert session["main_kernel_role"] == "COMPUTE"
    assert session["inference_metrics"] is None
    [container] = session["containers"]
    assert container == {
        "id": session["main_kernel_id"],
        "kernel_id": session["main_kernel_id"],
        "local_rank": 0,
        "agent_addr": None,
        "abusing_report": None,
    }

    nodes = (
        "{ agents { container_count mem_slots cpu_slots gpu_slots used_mem_slots used_cpu_slots"
        ' compute_containers(status: "RUNNING") { session_id } } }'
    )
    [agent] = data(await gql(api, nodes))
    assert agent == {
        "container_count": 1,
        "mem_slots": 4096,  # MiB
        "cpu_slots": 2.0,
        "gpu_slots": 0.0,
        "used_mem_slots": 64,
        "used_cpu_slots": 0.25,
        "compute_containers": [{"session_id": session_id}],
    }
    assert (await api.call("DELETE", "/session/legacy-1", keypair=user)).status == 200
    [agent] = data(await gql(api, nodes))
    assert (agent["container_count"], agent["compute_containers"]) == (0, [])
    gone = '{ agents { compute_containers(status: "TERMINATED") { session_id status } } }'
    [agent] = data(await gql(api, gone))
    assert agent["compute_containers"] == [{"session_id": session_id, "status": "TERMINATED"}]

    image = (
        "{ images { resource_limits { key } supported_accelerators raw_labels"
        " labels { key value } } }"
    )
    assert data(await gql(api, image)) == [
        {
            "resource_limits": [],
            "supported_accelerators": [],
            "raw_labels": '{"ai.shipyard.kernel": "1", "ai.shipyard.recipe.revision": "2"}',
            "labels": [
                {"key": "ai.shipyard.kernel", "value": "1"},
                {"key": "ai.shipyard.recipe.revision", "value": "2"},
            ],
        }
    ]
