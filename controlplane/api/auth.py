"""Verifying HMAC-signed requests (docs/backendai-api.md §3.2), each signature once."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession as DBSession
from sqlalchemy.ext.asyncio import async_sessionmaker

import wire
from controlplane.db.models import Keypair
from controlplane.errors import AuthFailed, GenericBadRequest, InvalidAuthParams
from controlplane.keypairs import Signers
from controlplane.replays import ReplayGuard

MAX_SKEW = timedelta(minutes=15)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


async def authenticate(
    db: async_sessionmaker[DBSession],
    *,
    signers: Signers,
    replays: ReplayGuard,
    method: str,
    target: str,
    headers: Mapping[str, str],
    scheme: str,
    now: datetime | None = None,
) -> Keypair:
    """The active keypair that signed this request, or an error saying what is wrong (also
    when this very signature was accepted before: a replay)."""
    authorization = headers.get("Authorization")
    if not authorization:
        raise AuthFailed("Unauthorized access: sign the request with your keypair")
    raw_date = headers.get("Date") or headers.get("X-BackendAI-Date") or headers.get("X-Sorna-Date")
    if not raw_date:
        raise InvalidAuthParams("Date/time sync error: the Date header is missing")
    try:
        date = wire.parse_date(raw_date)
    except ValueError as exc:
        raise InvalidAuthParams(f"Date/time sync error: {exc}") from exc
    now = now or datetime.now(UTC)
    if abs(now - date) > MAX_SKEW:
        raise InvalidAuthParams(
            "Date/time sync error: the request's Date differs from the server's clock by more"
            " than 15 minutes"
        )
    try:
        auth = wire.parse_authorization(authorization)
    except ValueError as exc:
        raise InvalidAuthParams(str(exc)) from exc
    version = headers.get("X-BackendAI-Version")
    if not version:
        raise GenericBadRequest("API version missing in request headers")
    if version not in wire.SUPPORTED_API_VERSIONS:
        raise GenericBadRequest("Unsupported API version.")
    found = await signers.get(db, auth.access_key)
    if found is None:
        raise AuthFailed("Unknown or inactive access key")
    keypair, secret_key = found
    content_type = headers.get("Content-Type", "application/octet-stream")
    content_type = content_type.split(";", 1)[0].strip().lower() or "application/octet-stream"
    host = headers.get("Host", "")
    hosts = [host]
    if ":" not in host and scheme in _DEFAULT_PORTS:
        # the client signs the configured netloc, which may spell out a default port
        hosts.append(f"{host}:{_DEFAULT_PORTS[scheme]}")
    for candidate in hosts:
        expected = wire.sign(
            method=method,
            rel_url=target,
            date=raw_date,
            host=candidate,
            content_type=content_type,
            version=version,
            secret_key=secret_key,
            hash_name=auth.hash_name,
        )
        if hmac.compare_digest(expected, auth.signature):
            replays.check(keypair.access_key, auth.signature, until=date + MAX_SKEW, now=now)
            return keypair
    raise AuthFailed("Signature mismatch")
