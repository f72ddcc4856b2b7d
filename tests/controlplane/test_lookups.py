"""What creating and placing a session keeps in memory (controlplane/lookups.py) never outlives
a change: each change made through the API counts from the very next create."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.testing import FakeNode
from tests.controlplane.conftest import API, Keypair
from tests.controlplane.test_graphql import gql
from tests.controlplane.test_policies import _wait_for
from tests.controlplane.test_tenancy import SMALL, make_user

pytestmark = pytest.mark.anyio


async def _create(api: API, name: str, keypair: Keypair | None = None, **fields: Any) -> Any:
    config: dict[str, Any] = {"resources": SMALL}
    if "scalingGroup" in fields:
        config["scalingGroup"] = fields.pop("scalingGroup")
    body = {"image": "python", "name": name, "config": config, "enqueueOnly": True, **fields}
    return await api.call("POST", "/session", body, keypair=keypair)


async def test_changes_count_from_the_next_create(api: API, node: FakeNode) -> None:
    # an alias: gone with its removal
    aliased = await api.call("POST", "/images/aliases", {"alias": "py", "target": "python"})
    assert aliased.status == 201, aliased.body
    assert (await _create(api, "by-alias", image="py")).status == 201
    assert (await api.call("DELETE", "/images/aliases/py")).status == 200
    gone = await _create(api, "by-alias-2", image="py")
    assert gone.status == 404 and "py" in gone.body["title"] + gone.body.get("msg", "")

    # a project's scaling groups: a pool bound to it after a create is usable at once
    assert (await _create(api, "in-default")).status == 201
    made = await gql(api, 'mutation { create_scaling_group(name: "pool-x", props: {}) { ok } }')
    assert made["data"]["create_scaling_group"]["ok"] is True
    groups = await gql(api, "{ groups { id name } }")
    default = next(g["id"] for g in groups["data"]["groups"] if g["name"] == "default")
    bind = (
        "mutation($g: UUID!) { associate_scaling_group_with_user_group("
        'scaling_group: "pool-x", user_group: $g) { ok } }'
    )
    assert (await gql(api, bind, {"g": default}))["data"]
    assert (await _create(api, "in-pool-x", scalingGroup="pool-x")).status == 201

    # project membership: a user taken out of a project cannot create in it any more
    made_p = await api.call("POST", "/admin/projects", {"domain": "default", "name": "p"})
    assert made_p.status == 201, made_p.body
    alice = await make_user(api, "alice@example.com")
    member = "/admin/projects/default/p/members/alice@example.com"
    assert (await api.call("PUT", member)).status == 200
    assert (await _create(api, "a-in-p", alice, group="p")).status == 201
    assert (await api.call("DELETE", member)).status == 200
    refused = await _create(api, "a-in-p-2", alice, group="p")
    assert (refused.status, refused.body["msg"]) == (400, "Invalid group")

    # a policy given to a keypair holds its next session back
    policy = (
        'mutation { create_keypair_resource_policy(name: "one", props: {'
        ' default_for_unspecified: "UNLIMITED", total_resource_slots: "{}",'
        " max_concurrent_sessions: 1, max_session_lifetime: 0,"
        " max_containers_per_session: 1, idle_timeout: 0 }) { ok msg } }"
    )
    assert (await gql(api, policy))["data"]["create_keypair_resource_policy"]["ok"] is True
    assign = 'mutation($k: String) { set_resource_policy(name: "one", access_key: $k) { ok } }'
    assert (await gql(api, assign, {"k": alice.access_key}))["data"]["set_resource_policy"]["ok"]
    assert (await _create(api, "a-second", alice)).status == 201
    await _wait_for(
        api,
        "a-second",
        lambda s: (
            s.status_info == "waiting: keypair resource policy 'one': at most 1 concurrent session"
        ),
    )
