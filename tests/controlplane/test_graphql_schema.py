"""Shipyard's GraphQL schema against Backend.AI 23.09's: every field of every covered type and
every root query (with its arguments) exists (backendai_23_09_schema.txt, derived from the
upstream schema), and every field resolves on real data without an error."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLObjectType, GraphQLScalarType, get_named_type

from controlplane import graphql
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API
from tests.controlplane.test_graphql import create, errors, gql, user_keypair

FIXTURE = Path(__file__).with_name("backendai_23_09_schema.txt")
COVERED = {
    "ComputeSession",
    "ComputeContainer",
    "Agent",
    "Image",
    "User",
    "KeyPair",
    "Group",
    "Domain",
    "ScalingGroup",
    "KeyPairResourcePolicy",
}


@dataclass
class Upstream:
    types: dict[str, list[str]] = field(default_factory=dict)
    queries: dict[str, list[str]] = field(default_factory=dict)


def load_upstream() -> Upstream:
    upstream = Upstream()
    current: list[str] | None = None
    for number, line in enumerate(FIXTURE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("type "):
            current = upstream.types.setdefault(line.split()[1], [])
        elif line.startswith("query "):
            match = re.fullmatch(r"query (\w+)(?:\(([\w, ]*)\))?", line)
            assert match, f"{FIXTURE.name}:{number}: cannot read {line!r}"
            name, args = match.groups()
            upstream.queries[name] = [a.strip() for a in (args or "").split(",") if a.strip()]
            current = None
        else:
            assert current is not None and line.startswith("  "), f"{FIXTURE.name}:{number}"
            current.append(line.strip())
    return upstream


UPSTREAM = load_upstream()
SCHEMA = graphql.schema()


def test_the_fixture_covers_every_type_shipyard_has() -> None:
    assert set(UPSTREAM.types) == COVERED
    assert all(UPSTREAM.types.values())


@pytest.mark.parametrize("type_name", sorted(COVERED))
def test_every_23_09_field_is_in_the_schema(type_name: str) -> None:
    served = SCHEMA.type_map.get(type_name)
    assert isinstance(served, GraphQLObjectType), f"schema.graphql has no type {type_name}"
    missing = [name for name in UPSTREAM.types[type_name] if name not in served.fields]
    assert missing == [], f"{type_name} lacks 23.09 fields {missing}"


@pytest.mark.parametrize("query_name", sorted(UPSTREAM.queries))
def test_every_23_09_root_query_takes_its_arguments(query_name: str) -> None:
    assert SCHEMA.query_type is not None
    served = SCHEMA.query_type.fields.get(query_name)
    assert served is not None, f"schema.graphql has no root query {query_name}"
    missing = [arg for arg in UPSTREAM.queries[query_name] if arg not in served.args]
    assert missing == [], f"{query_name} does not take {missing}"


def selection(type_name: str) -> str:
    """Every field Shipyard serves for this type; objects by their __typename."""
    served = SCHEMA.type_map[type_name]
    assert isinstance(served, GraphQLObjectType)
    parts = []
    for name, spec in served.fields.items():
        named = get_named_type(spec.type)
        parts.append(f"{name} {{ __typename }}" if isinstance(named, GraphQLObjectType) else name)
    return " ".join(parts)


def json_fields(type_name: str) -> list[str]:
    served = SCHEMA.type_map[type_name]
    assert isinstance(served, GraphQLObjectType)
    return [
        name
        for name, spec in served.fields.items()
        if isinstance(get_named_type(spec.type), GraphQLScalarType)
        and get_named_type(spec.type).name == "JSONString"
    ]


def check_items(type_name: str, items: list[dict[str, Any]]) -> None:
    assert items, f"nothing to check {type_name} on"
    served = SCHEMA.type_map[type_name]
    assert isinstance(served, GraphQLObjectType)
    for item in items:
        assert list(item) == list(served.fields)
        for name in json_fields(type_name):
            value = item[name]
            values = value if isinstance(value, list) else [value]
            for one in values:
                assert one is None or isinstance(json.loads(one), dict | list), (name, one)


@pytest.mark.anyio
async def test_every_field_of_every_type_resolves_on_real_data(api: API, node: FakeNode) -> None:
    user = await user_keypair(api, "user@example.com")
    session_id = await create(api, "everything-1", keypair=user)
    queries = {
        "ComputeSession": ("compute_session(id: $id)", {"id": session_id}),
        "Agent": ("agents", {}),
        "Image": ("images", {}),
        "User": ("users", {}),
        "KeyPair": ("keypairs", {}),
        "Group": ("groups", {}),
        "Domain": ("domains", {}),
        "ScalingGroup": ("scaling_groups", {}),
        "KeyPairResourcePolicy": ("keypair_resource_policies", {}),
    }
    for type_name, (root, variables) in queries.items():
        declared = "($id: UUID!)" if variables else ""
        body = await gql(
            api, f"query{declared} {{ {root} {{ {selection(type_name)} }} }}", variables
        )
        assert "errors" not in body, (type_name, body["errors"])
        [result] = body["data"].values()
        check_items(type_name, result if isinstance(result, list) else [result])

    containers = "query($id: UUID!) { compute_session(id: $id) { containers { FIELDS } } }"
    body = await gql(
        api, containers.replace("FIELDS", selection("ComputeContainer")), {"id": session_id}
    )
    assert "errors" not in body, body["errors"]
    check_items("ComputeContainer", body["data"]["compute_session"]["containers"])
    on_node = "{ agents { compute_containers { FIELDS } } }"
    body = await gql(api, on_node.replace("FIELDS", selection("ComputeContainer")))
    assert "errors" not in body, body["errors"]
    check_items("ComputeContainer", body["data"]["agents"][0]["compute_containers"])


@pytest.mark.anyio
async def test_a_user_selecting_everything_gets_only_own_objects(api: API, node: FakeNode) -> None:
    user = await user_keypair(api, "user@example.com")
    await create(api, "admins-1")
    mine = await create(api, "mine-1", keypair=user)
    body = await gql(
        api, "{ keypairs { FIELDS } }".replace("FIELDS", selection("KeyPair")), keypair=user
    )
    assert "errors" not in body, body["errors"]
    [keypair] = body["data"]["keypairs"]
    assert keypair["access_key"] == user.access_key
    nested = "{ keypairs { compute_sessions { id } } }"
    sessions = (await gql(api, nested, keypair=user))["data"]["keypairs"][0]["compute_sessions"]
    assert [s["id"] for s in sessions] == [mine]
    denied = await gql(api, "{ agents { id compute_containers { id } } }", keypair=user)
    assert "Insufficient privilege" in errors(denied)[0]
