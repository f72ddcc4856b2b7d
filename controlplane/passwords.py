"""Sign-in passwords: argon2id hashes, and a limit on failed attempts.

The limit is kept in memory, per e-mail and per client address: after `MAX_FAILURES` failures
within `WINDOW`, further attempts from that address or for that e-mail are refused until the
oldest failure leaves the window, whether the password would be right or not (so guessing gains
nothing from the answer). A restart forgets the count, which costs an attacker a restart of the
control plane per few guesses.
"""

from __future__ import annotations

import secrets
from collections import deque
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_FAILURES = 5
WINDOW = timedelta(minutes=5)
MIN_LENGTH = 8
MAX_TRACKED = 10_000  # keys counted at once; beyond, those with no recent failure are dropped
_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        _hasher.hash(password)  # as slow as a real check: the answer's time tells nothing
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def generate() -> str:
    return secrets.token_urlsafe(18)


class SignInGuard:
    """Counts failed sign-ins per e-mail and per client address."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[datetime]] = {}

    def retry_after(self, email: str, addr: str, now: datetime) -> float | None:
        """Seconds until an attempt is allowed again; None: allowed now."""
        waits = [self._wait(f"user:{email.lower()}", now), self._wait(f"addr:{addr}", now)]
        longest = max(waits)
        return longest if longest > 0 else None

    def failed(self, email: str, addr: str, now: datetime) -> None:
        if len(self._failures) >= MAX_TRACKED:
            for key in list(self._failures):
                self._wait(key, now)  # drops the keys whose failures all left the window
        for key in (f"user:{email.lower()}", f"addr:{addr}"):
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, email: str) -> None:
        self._failures.pop(f"user:{email.lower()}", None)

    def _wait(self, key: str, now: datetime) -> float:
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and now - times[0] >= WINDOW:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < MAX_FAILURES:
            return 0.0
        return (times[0] + WINDOW - now).total_seconds()
