"""Replays (issue 8, item 11): a captured signed request is refused the second time, also with
another body under the same signature; every fresh signature still works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.errors import AuthFailed, ServiceBusy
from controlplane.replays import ReplayGuard
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


async def test_a_captured_request_is_refused_when_sent_again(api: API) -> None:
    date = datetime.now(UTC)
    first = await api.call("POST", "/admin/keypairs", {"user": "a@example.com"}, date=date)
    assert first.status == 201
    again = await api.call("POST", "/admin/keypairs", {"user": "a@example.com"}, date=date)
    assert again.status == 401 and "replay" in again.body["msg"]
    # the signature covers no body: another body under the same signature is refused too
    swapped = await api.call("POST", "/admin/keypairs", {"user": "evil@example.com"}, date=date)
    assert swapped.status == 401
    listed = await api.call("GET", "/admin/keypairs")  # a fresh Date: a fresh signature
    assert [k["userEmail"] for k in listed.body["items"]].count("evil@example.com") == 0
    assert [k["userEmail"] for k in listed.body["items"]].count("a@example.com") == 1


async def test_a_refused_signature_is_not_remembered(api: API) -> None:
    date = datetime.now(UTC)
    bad = await api.call("GET", "/admin/keypairs", date=date, secret="not-the-secret")
    assert bad.status == 401 and bad.body["msg"] == "Signature mismatch"
    assert (await api.call("GET", "/admin/keypairs", date=date)).status == 200


def test_the_memory_forgets_at_the_window_end_and_is_bounded() -> None:
    guard = ReplayGuard(max_entries=2)
    now = datetime.now(UTC)
    window = timedelta(minutes=15)
    guard.check("AK", "sig-1", until=now + window, now=now)
    guard.check("AK", "sig-2", until=now + window, now=now)
    with pytest.raises(AuthFailed):
        guard.check("AK", "sig-1", until=now + window, now=now)
    with pytest.raises(ServiceBusy):  # full of signatures still valid: refuse, never forget
        guard.check("AK", "sig-3", until=now + window, now=now)
    later = now + window + timedelta(seconds=1)  # both Dates left the window
    guard.check("AK", "sig-3", until=later + window, now=later)
    assert len(guard) == 1
    guard.check("OTHER", "sig-1", until=later + window, now=later)  # per access key
