"""HMAC request signing exactly as backend.ai-client 23.9.10 does it (docs/backendai-api.md §3).

The body is never hashed (API >= v4.20181215): the body hash is always that of empty bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

API_VERSION = "v7.20230615"
SUPPORTED_API_VERSIONS = frozenset(
    {
        "v4.20181215",
        "v4.20190115",
        "v4.20190315",
        "v4.20190615",
        "v5.20191215",
        "v6.20200815",
        "v6.20210815",
        "v6.20220315",
        "v6.20220615",
        "v6.20230315",
        "v7.20230615",
    }
)
EMPTY_BODY_HASH = hashlib.sha256(b"").hexdigest()


def sign(
    *,
    method: str,
    rel_url: str,
    date: str,
    host: str,
    content_type: str,
    version: str,
    secret_key: str,
    hash_name: str = "sha256",
) -> str:
    """The lowercase hex signature of one request.

    `date` is the Date header verbatim; the key is derived from its calendar day (UTC) and `host`.
    """
    day = parse_date(date).astimezone(UTC).strftime("%Y%m%d")
    string_to_sign = "\n".join(
        [
            method.upper(),
            rel_url,
            date,
            f"host:{host}",
            f"content-type:{content_type.lower()}",
            f"x-backendai-version:{version}",
            hashlib.new(hash_name, b"").hexdigest(),
        ]
    )
    k1 = hmac.new(secret_key.encode(), day.encode(), hash_name).digest()
    k2 = hmac.new(k1, host.encode(), hash_name).digest()
    return hmac.new(k2, string_to_sign.encode(), hash_name).hexdigest()


def authorization_header(access_key: str, signature: str, hash_name: str = "sha256") -> str:
    return f"BackendAI signMethod=HMAC-{hash_name.upper()}, credential={access_key}:{signature}"


@dataclass(frozen=True)
class AuthHeader:
    hash_name: str  # lower-case hashlib name, e.g. "sha256"
    access_key: str
    signature: str


def parse_authorization(value: str) -> AuthHeader:
    """Parse `BackendAI signMethod=HMAC-SHA256, credential=AK:SIG`.

    ValueError says what is wrong."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme not in ("BackendAI", "Sorna"):
        raise ValueError("the Authorization scheme must be 'BackendAI'")
    params: dict[str, str] = {}
    for piece in rest.split(","):
        key, sep, val = piece.strip().partition("=")
        if sep:
            params[key] = val
    if "signMethod" not in params or "credential" not in params:
        raise ValueError("the Authorization header needs signMethod and credential")
    method = params["signMethod"]
    if not method.upper().startswith("HMAC-"):
        raise ValueError("signMethod must be HMAC-<hash>")
    hash_name = method[5:].lower()
    # SHAKE digests have no fixed length, so no HMAC can be made with them
    if hash_name not in hashlib.algorithms_guaranteed or hash_name.startswith("shake_"):
        raise ValueError(f"unsupported hash {hash_name!r} in signMethod")
    access_key, sep, signature = params["credential"].partition(":")
    if not sep or not access_key or not signature:
        raise ValueError("credential must be ACCESS_KEY:SIGNATURE")
    return AuthHeader(hash_name, access_key, signature)


def parse_date(value: str) -> datetime:
    """Parse a Date header leniently: ISO 8601 (what the client sends) or RFC 1123.

    A date without a timezone is taken as UTC. ValueError when it is neither.
    """
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"cannot parse date {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
