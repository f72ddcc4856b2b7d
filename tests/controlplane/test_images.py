"""The images the platform knows (controlplane/images.py): a recipe image is known when a node
reports it, any other labelled image only once an admin registers it, and a forgotten image
stays forgotten. REST (`GET/POST /images`, `DELETE /images/<name>`) and GraphQL (`images`,
`image`) tell the same."""

from __future__ import annotations

from typing import Any

import pytest

import wire
from controlplane import reconcile
from controlplane.testing import TEST_IMAGE, FakeNode
from tests.controlplane.conftest import API
from tests.controlplane.test_graphql import gql, user_keypair

pytestmark = pytest.mark.anyio
HAND_MADE = "site/tools:1"  # built by hand with the kernel label, not by a recipe
HAND_MADE_INFO = wire.ImageInfo(
    HAND_MADE,
    "sha256:hand",
    2000,
    "x86_64",
    ["tools"],
    {"ai.shipyard.kernel": "1", "ai.shipyard.aliases": "tools"},
)


async def _report(api: API, node: FakeNode, *extra: wire.ImageInfo) -> None:
    images = [*node.register_message().images, *extra]
    await reconcile.on_images_changed(api.core, node.node_id, wire.ImagesChanged(images))


async def _listed(api: API) -> dict[str, dict[str, Any]]:
    rest = (await api.call("GET", "/images")).body["items"]
    query = "{ images { humanized_name installed installed_agents aliases } }"
    graphql = (await gql(api, query))["data"]["images"]
    assert [i["humanized_name"] for i in graphql] == [i["name"] for i in rest]
    assert [i["installed_agents"] for i in graphql] == [i["nodes"] for i in rest]
    assert [i["aliases"] for i in graphql] == [i["aliases"] for i in rest]
    return {i["name"]: i for i in rest}


async def _image(api: API, reference: str) -> Any:
    query = "query($r: String!) { image(reference: $r) { humanized_name labels { key value } } }"
    return (await gql(api, query, {"r": reference}))["data"]["image"]


async def _create(api: API, image: str) -> int:
    body = {"image": image, "name": "img-1", "config": {"resources": {"cpu": "0.25"}}}
    return (await api.call("POST", "/session", body)).status


async def test_an_unregistered_image_is_neither_listed_nor_usable(api: API, node: FakeNode) -> None:
    await _report(api, node, HAND_MADE_INFO)
    assert list(await _listed(api)) == [TEST_IMAGE]  # the recipe image only
    assert await _image(api, HAND_MADE) is None
    assert await _image(api, "tools") is None  # its alias label is not adopted either
    assert await _create(api, HAND_MADE) == 404


async def test_register_then_forget(api: API, node: FakeNode) -> None:
    await _report(api, node, HAND_MADE_INFO)
    registered = await api.call("POST", "/images", {"name": HAND_MADE})
    assert registered.status == 201, registered.body
    assert registered.body["source"] == "admin"
    assert registered.body["nodes"] == [node.node_id]
    assert registered.body["aliases"] == ["tools"]
    assert registered.body["labels"] == HAND_MADE_INFO.labels
    assert set(await _listed(api)) == {TEST_IMAGE, HAND_MADE}
    assert (await _image(api, "tools"))["humanized_name"] == HAND_MADE
    assert await _create(api, "tools") == 201

    forgotten = await api.call("DELETE", f"/images/{HAND_MADE}")
    assert (forgotten.status, forgotten.body) == (200, {"name": HAND_MADE, "forgotten": True})
    assert list(await _listed(api)) == [TEST_IMAGE]
    assert await _image(api, "tools") is None
    again = await api.call("DELETE", f"/images/{HAND_MADE}")
    assert (again.status, again.body["title"]) == (404, "No such environment image.")


async def test_a_forgotten_recipe_image_stays_forgotten(api: API, node: FakeNode) -> None:
    assert (await api.call("DELETE", f"/images/{TEST_IMAGE}")).status == 200
    await _report(api, node)  # the node reports it again
    assert await _listed(api) == {}
    assert await _create(api, "python") == 404  # its alias went with it
    assert (await api.call("POST", "/images", {"name": TEST_IMAGE})).status == 201
    assert list(await _listed(api)) == [TEST_IMAGE]


async def test_registering_is_for_admins_and_for_images_a_node_has(
    api: API, node: FakeNode
) -> None:
    user = await user_keypair(api, "img-user@example.com")
    refused = await api.call("POST", "/images", {"name": TEST_IMAGE}, keypair=user)
    assert refused.status == 403
    forget = await api.call("DELETE", f"/images/{TEST_IMAGE}", keypair=user)
    assert forget.status == 403
    missing = await api.call("POST", "/images", {"name": "nowhere/x:1"})
    assert missing.status == 404
    assert "No node has the image 'nowhere/x:1'" in missing.body["msg"]
    for bad in ({}, {"name": ""}, {"name": TEST_IMAGE, "extra": 1}, ["x"]):
        answer = await api.call("POST", "/images", bad)
        assert answer.status == 400, (bad, answer.body)
        assert answer.content_type == "application/problem+json"
    # the alias routes are not taken for image names
    assert (await api.call("DELETE", "/images/aliases/python")).body == {
        "alias": "python",
        "deleted": True,
    }
