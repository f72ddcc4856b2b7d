"""Every call but the probe is signed; each way of getting it wrong says what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from controlplane.db.models import Keypair
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


async def test_version_probe_needs_no_signature(api: API) -> None:
    response = await api.app.test_client().get("/")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert (await response.get_json())["version"] == "v7.20230615"


async def test_signed_request_passes(api: API) -> None:
    response = await api.call("GET", "/manager/announcement")
    assert (response.status, response.body) == (200, {"enabled": False, "message": ""})


async def test_unsigned_request_is_refused(api: API) -> None:
    response = await api.app.test_client().get("/session")
    assert response.status_code == 401
    assert response.content_type == PROBLEM
    assert (await response.get_json())["type"].endswith("/auth-failed")


async def test_bad_signature(api: API) -> None:
    response = await api.call("GET", "/session", secret="not-the-secret")
    assert response.status == 401
    assert response.content_type == PROBLEM
    assert response.body["title"] == "Credential/signature mismatch."


async def test_stale_date(api: API) -> None:
    response = await api.call("GET", "/session", date=datetime.now(UTC) - timedelta(minutes=20))
    assert response.status == 400
    assert response.body["type"].endswith("/invalid-auth-params")
    assert "15 minutes" in response.body["msg"]


async def test_skew_within_fifteen_minutes_is_fine(api: API) -> None:
    response = await api.call("GET", "/session", date=datetime.now(UTC) + timedelta(minutes=14))
    assert response.status == 200


async def test_unknown_access_key(api: API) -> None:
    stranger = type(api.admin)(access_key="AKIANOBODY0000000000", secret_key="x")
    response = await api.call("GET", "/session", keypair=stranger)
    assert response.status == 401
    assert response.body["type"].endswith("/auth-failed")


@pytest.mark.parametrize(
    ("headers", "status", "slug"),
    [
        ({"Authorization": "BackendAI nonsense"}, 400, "invalid-auth-params"),
        ({"Date": "yesterday"}, 400, "invalid-auth-params"),
        ({"X-BackendAI-Version": "v9.20990101"}, 400, "generic-bad-request"),
    ],
)
async def test_malformed_auth_headers(
    api: API, headers: dict[str, str], status: int, slug: str
) -> None:
    response = await api.call("GET", "/session", headers=headers)
    assert response.status == status
    assert response.body["type"].endswith("/" + slug)
    assert response.body["msg"]


async def test_deleted_keypair_can_no_longer_sign(api: API) -> None:
    created = await api.call("POST", "/admin/keypairs", {"user": "carol@example.com"})
    assert created.status == 201
    carol = type(api.admin)(
        access_key=created.body["accessKey"], secret_key=created.body["secretKey"]
    )
    assert (await api.call("GET", "/session", keypair=carol)).status == 200
    removed = await api.call("DELETE", f"/admin/keypairs/{carol.access_key}")
    assert removed.status == 200
    assert (await api.call("GET", "/session", keypair=carol)).status == 401


async def test_admin_routes_need_an_admin(api: API) -> None:
    created = await api.call("POST", "/admin/keypairs", {"user": "dave@example.com"})
    dave = type(api.admin)(
        access_key=created.body["accessKey"], secret_key=created.body["secretKey"]
    )
    for method, path, body in [
        ("GET", "/admin/keypairs", None),
        ("POST", "/admin/keypairs", {"user": "eve@example.com"}),
        ("POST", "/images/aliases", {"alias": "py", "target": "python"}),
    ]:
        response = await api.call(method, path, body, keypair=dave)
        assert response.status == 403, path
        assert response.body["type"].endswith("/insufficient-privilege")
    listing = await api.call("GET", "/admin/keypairs")
    assert "eve@example.com" not in {k["userEmail"] for k in listing.body["items"]}


async def test_cannot_remove_own_keypair(api: API) -> None:
    response = await api.call("DELETE", f"/admin/keypairs/{api.admin.access_key}")
    assert response.status == 400
    assert (await api.call("GET", "/session")).status == 200


async def test_keypair_and_user_changes_count_from_the_very_next_call(api: API) -> None:
    """Who signed is kept in memory (keypairs.Signers); every write to a keypair or a user, by
    whatever path, is seen by the next call."""
    created = await api.call("POST", "/admin/keypairs", {"user": "frank@example.com"})
    frank = type(api.admin)(created.body["accessKey"], created.body["secretKey"])
    made = await api.call("POST", "/admin/keypairs", {"user": "gina@example.com", "isAdmin": True})
    gina = type(api.admin)(made.body["accessKey"], made.body["secretKey"])
    assert (await api.call("GET", "/session", keypair=frank)).status == 200  # now in memory
    assert (await api.call("GET", "/nodes", keypair=gina)).status == 403  # an admin, not super

    # REST: the user deactivated, then active again; a role raised
    for status, expected in (("inactive", 401), ("active", 200)):
        changed = await api.call("PATCH", "/admin/users/frank@example.com", {"status": status})
        assert changed.status == 200
        assert (await api.call("GET", "/session", keypair=frank)).status == expected
    raised = await api.call("PATCH", "/admin/users/gina@example.com", {"role": "superadmin"})
    assert raised.status == 200
    assert (await api.call("GET", "/nodes", keypair=gina)).status == 200

    # GraphQL: a keypair put under another policy
    policy = 'mutation { create_keypair_resource_policy(name: "p1", props: {}) { ok } }'
    assert (await api.call("POST", "/admin/gql", {"query": policy})).status == 200
    assigned = await api.call(
        "POST",
        "/admin/gql",
        {
            "query": 'mutation($k: String) { set_resource_policy(name: "p1", access_key: $k)'
            " { ok msg } }",
            "variables": {"k": frank.access_key},
        },
    )
    assert assigned.body["data"]["set_resource_policy"]["ok"], assigned.body
    found = await api.core.signers.get(api.core.db, frank.access_key)
    assert found is not None and found[0].resource_policy == "p1"

    # a bulk UPDATE through any database session of the core
    async with api.core.db() as db:
        await db.execute(
            update(Keypair).where(Keypair.access_key == frank.access_key).values(is_active=False)
        )
        await db.commit()
    assert (await api.call("GET", "/session", keypair=frank)).status == 401
    # a handler changing its copy of the requester changes nothing for the next call
    mine = await api.core.signers.get(api.core.db, gina.access_key)
    assert mine is not None
    mine[0].user.role = "user"
    assert (await api.call("GET", "/nodes", keypair=gina)).status == 200
