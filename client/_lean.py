"""What the fast `shipyard run` (client/fastrun.py) does before its first request, without the
standard library modules that cost more to import than the work itself.

`json` and `urllib.parse` import `re` (and `re` imports `enum`); `hmac` and `hashlib` load
OpenSSL; `datetime` is a module more. Each replacement here is exact where it must be: `dumps`
is `json.dumps` with its defaults, `hmac_sha256` is RFC 2104's HMAC (tests/client compare them).
"""

from __future__ import annotations

import time

try:
    from _json import encode_basestring_ascii as _quote
except ImportError:  # an interpreter without the C accelerator: json's own (imports re)
    from json.encoder import py_encode_basestring_ascii as _quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hashlib import sha256 as _sha256
    from typing import Any
else:
    try:
        from _sha256 import sha256 as _sha256  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256 as _sha256  # Python 3.12 and later
        except ImportError:  # built without the builtin hashes: OpenSSL's
            from hashlib import sha256 as _sha256

_BLOCK = 64  # SHA-256's block size, in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def dumps(value: Any) -> str:
    """`json.dumps(value)`: ASCII-only, ", " and ": " separators, NaN and Infinity allowed."""
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    if isinstance(value, dict):
        items = (f"{_key(key)}: {dumps(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _quote(key)
    raise TypeError(f"keys must be str here, not {type(key).__name__}")


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of `message` under `key` (RFC 2104), as `hmac.new(key, message, "sha256")`."""
    if len(key) > _BLOCK:
        key = _sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = _sha256(key.translate(_IPAD) + message).digest()
    return _sha256(key.translate(_OPAD) + inner).digest()


def utc_now() -> str:
    """The current UTC time in ISO 8601 with microseconds, as the Date header carries it:
    `datetime.now(UTC).isoformat()`, except that it always writes the fraction."""
    now = time.time_ns() // 1000
    seconds, micros = divmod(now, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}+00:00"
