"""The SSH key pair the platform keeps for each keypair (docs/backendai-api.md §10.4).

Generated as ed25519 (OpenSSH formats) or given by the user; a given pair must be an OpenSSH
public key and an unencrypted OpenSSH/PEM private key of that same key, so a session is never
set up with a pair that cannot log in. The private key is sealed at rest with the control
plane's secrets key, bound to the access key (controlplane/secretbox.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import SSHKeypair
from controlplane.db.types import utcnow
from controlplane.errors import InvalidAPIParams
from controlplane.secretbox import SecretBox

_OPENSSH = serialization.PublicFormat.OpenSSH
MAX_KEY_TEXT = 16384


@dataclass(frozen=True)
class SSHKeys:
    public_key: str
    private_key: str


def generate(comment: str) -> SSHKeys:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, _OPENSSH).decode()
    return SSHKeys(f"{public} {comment}\n", private)


def checked(public_key: str, private_key: str) -> SSHKeys:
    """The pair as stored (trailing whitespace trimmed, one newline added), or
    InvalidAPIParams saying what is wrong with it."""
    public_key, private_key = public_key.rstrip() + "\n", private_key.rstrip() + "\n"
    if len(public_key) > MAX_KEY_TEXT or len(private_key) > MAX_KEY_TEXT:
        raise InvalidAPIParams(f"SSH keys are at most {MAX_KEY_TEXT} characters")
    try:
        public = serialization.load_ssh_public_key(public_key.encode())
    except (ValueError, TypeError) as exc:
        raise InvalidAPIParams(f"pubkey is not an OpenSSH public key: {exc}") from None
    try:
        private = serialization.load_ssh_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidAPIParams(
            f"privkey is not an unencrypted OpenSSH private key: {exc}"
        ) from None
    mine = private.public_key().public_bytes(serialization.Encoding.OpenSSH, _OPENSSH)
    theirs = public.public_bytes(serialization.Encoding.OpenSSH, _OPENSSH)
    if mine != theirs:
        raise InvalidAPIParams("pubkey is not the public key of privkey")
    return SSHKeys(public_key, private_key)


async def public_key(db: DBSession, access_key: str) -> str | None:
    row = await db.get(SSHKeypair, access_key)
    return row.public_key if row is not None else None


async def pair(db: DBSession, box: SecretBox, access_key: str) -> SSHKeys | None:
    """The keypair's SSH key pair, its private key unsealed; None when it has none."""
    row = await db.get(SSHKeypair, access_key)
    if row is None:
        return None
    private = box.unseal(row.sealed_private_key, bound_to=f"ssh:{access_key}")
    return SSHKeys(row.public_key, private)


async def store(db: DBSession, box: SecretBox, access_key: str, keys: SSHKeys) -> None:
    """Keep `keys` as the keypair's (replacing any it had); the caller commits."""
    sealed = box.seal(keys.private_key, bound_to=f"ssh:{access_key}")
    row = await db.get(SSHKeypair, access_key)
    if row is None:
        db.add(SSHKeypair(access_key=access_key, public_key=keys.public_key,
                          sealed_private_key=sealed))  # fmt: skip
    else:
        row.public_key, row.sealed_private_key, row.changed_at = keys.public_key, sealed, utcnow()
    await db.flush()
