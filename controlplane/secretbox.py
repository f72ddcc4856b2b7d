"""Secrets at rest: keypair secret keys are stored sealed (AES-256-GCM) with a key that lives
outside the database, in a 0600 file in the control plane's state directory. A copy of the
database alone cannot sign a request.

Each sealed value is `v1:` + URL-safe base64 of nonce ‖ ciphertext ‖ tag; the access key is
bound in as associated data, so a sealed secret copied onto another keypair's row does not open.
Unsealing costs a microsecond or two, less than the HMAC it feeds, so nothing keeps clear secrets
in a cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1:"
_NONCE = 12


class SecretBoxError(Exception):
    """The key file is unusable, or a sealed value does not open with it."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecretBoxError("the secrets key must be 32 bytes")
        self._aead = AESGCM(key)
        # a separate key for tokens, so no token is ever computed with the sealing key itself
        self._token_key = hmac.digest(key, b"shipyard token key", hashlib.sha256)

    @classmethod
    def load_or_create(cls, path: Path) -> SecretBox:
        """The key in `path`, made (32 random bytes, mode 0600) when the file does not exist."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls.load(path)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.urlsafe_b64encode(secrets.token_bytes(32)) + b"\n")
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> SecretBox:
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise SecretBoxError(f"{path} must be readable by its owner only (chmod 600)")
            key = base64.urlsafe_b64decode(path.read_bytes().strip())
        except (OSError, ValueError) as exc:
            raise SecretBoxError(f"cannot read the secrets key {path}: {exc}") from exc
        return cls(key)

    def seal(self, clear: str, *, bound_to: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, clear.encode(), bound_to.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def token(self, purpose: str) -> str:
        """A stable secret for `purpose` (32 hex digits) that only this key computes: the
        same every time, so it needs no storage (an app token per session)."""
        return hmac.digest(self._token_key, purpose.encode(), hashlib.sha256).hex()[:32]

    def unseal(self, sealed: str, *, bound_to: str) -> str:
        if not sealed.startswith(_PREFIX):
            raise SecretBoxError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
            clear = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], bound_to.encode())
        except (ValueError, InvalidTag) as exc:
            raise SecretBoxError("a sealed secret does not open with this key") from exc
        return clear.decode()
