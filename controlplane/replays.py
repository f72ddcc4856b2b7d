"""Refusing replayed requests.

A Backend.AI signature covers the method, path, Date, host, content type and API version, not
the body, and stays acceptable while its Date is within the clock-skew window. So a captured
request could be sent again (with another body) until then. Every accepted signature is
remembered until its Date leaves the window, and a second use is refused. The official client
signs each request with a fresh Date (microseconds included), so it never repeats one.

The memory is this process's: with several control-plane processes behind one address it would
have to be shared (e.g. in PostgreSQL or Redis). There is one process today.
"""

from __future__ import annotations

import hashlib
import heapq
from datetime import datetime

from controlplane.errors import AuthFailed, ServiceBusy

# an entry lives at most 30 minutes (a Date up to 15 minutes ahead, plus the window) and takes
# ~180 bytes: at most ~45 MiB, and room for ~140 signed requests a second, sustained
MAX_ENTRIES = 250_000


class ReplayGuard:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._seen: dict[bytes, float] = {}  # digest of (access key, signature) -> expiry
        self._expiries: list[tuple[float, bytes]] = []  # a heap, to forget in order

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, access_key: str, signature: str, *, until: datetime, now: datetime) -> None:
        """Remember this signature until `until` (when its Date leaves the window); AuthFailed
        if it was seen before."""
        self._forget_expired(now.timestamp())
        key = hashlib.blake2b(f"{access_key}:{signature}".encode(), digest_size=16).digest()
        if key in self._seen:
            raise AuthFailed(
                "this signed request was already used (a replay): sign every request anew,"
                " with a fresh Date"
            )
        if len(self._seen) >= self._max:
            # refusing is safer than forgetting a signature that is still acceptable
            raise ServiceBusy("too many signed requests in the last minutes; retry shortly")
        expiry = until.timestamp()
        self._seen[key] = expiry
        heapq.heappush(self._expiries, (expiry, key))

    def _forget_expired(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] < now:
            _, key = heapq.heappop(self._expiries)
            del self._seen[key]
