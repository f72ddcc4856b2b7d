"""The signing algorithm against the test vectors computed with backend.ai-client's own code
(docs/backendai-api.md §3.4)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

import wire

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DATE = "2024-01-02T03:04:05.123456+00:00"
HOST = "127.0.0.1:8081"


@pytest.mark.parametrize(
    ("method", "rel_url", "content_type", "expected"),
    [
        ("GET", "/", "text/plain",
         "4abb452d5d9b4903271df422a4903f6797de6c084c2db91a40f2362cc80677d5"),
        ("POST", "/session", "application/json",
         "5e7964628c73b2ac70c75adecb2ab7a6552771d38a26cb09287be78f700944f8"),
        ("GET", "/stream/session/c1a2b3c4-0000-4000-8000-000000000001/execute",
         "application/octet-stream",
         "5504d73a8f5fa97809a0cbd975af21e2210f40ec569aa1f0f4c26cf68f7f0665"),
        ("GET", "/events/session?sessionName=mysess&scope=*", "application/octet-stream",
         "51c356177aa1518c7a8b7c21180d5023b286bbd0046e235a1c59447efe820fcf"),
        ("POST", "/admin/gql", "application/json",
         "a7747cca0e1af889e5de2bd226aa1b3d80d1e5ed41d9f77277f6a5d3aee0161a"),
    ],
)  # fmt: skip
def test_signature_matches_the_reference_client(
    method: str, rel_url: str, content_type: str, expected: str
) -> None:
    signature = wire.sign(
        method=method,
        rel_url=rel_url,
        date=DATE,
        host=HOST,
        content_type=content_type,
        version="v7.20230615",
        secret_key=SECRET,
    )
    assert signature == expected


def test_derived_keys_match_the_document() -> None:
    k1 = hmac.new(SECRET.encode(), b"20240102", hashlib.sha256).digest()
    assert k1.hex() == "7719b4d3d9c3ca6db0e12e4e68239a415abd410ee820dcd44cea574d538d8093"
    k2 = hmac.new(k1, HOST.encode(), hashlib.sha256).digest()
    assert k2.hex() == "6a2e075c55f1f6848977f98b7222440a007a405d9e407e7fa7eaa7fd1fc7191f"


def test_authorization_header_round_trip() -> None:
    header = wire.authorization_header("AKIAIOSFODNN7EXAMPLE", "ab" * 32)
    assert (
        header == f"BackendAI signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE:{'ab' * 32}"
    )
    parsed = wire.parse_authorization(header)
    assert (parsed.hash_name, parsed.access_key, parsed.signature) == (
        "sha256",
        "AKIAIOSFODNN7EXAMPLE",
        "ab" * 32,
    )


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "BackendAI credential=AK:SIG",
        "BackendAI signMethod=HMAC-SHA256",
        "BackendAI signMethod=RSA, credential=AK:SIG",
        "BackendAI signMethod=HMAC-NOPE, credential=AK:SIG",
        "BackendAI signMethod=HMAC-SHA256, credential=AKSIG",
    ],
)
def test_malformed_authorization_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        wire.parse_authorization(value)


def test_dates_are_read_leniently() -> None:
    iso = wire.parse_date("2024-01-02T03:04:05.123456+00:00")
    assert iso == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert wire.parse_date("Tue, 02 Jan 2024 03:04:05 GMT") == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    assert wire.parse_date("2024-01-02T03:04:05").tzinfo is UTC  # naive means UTC
    with pytest.raises(ValueError):
        wire.parse_date("yesterday")
