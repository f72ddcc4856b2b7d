"""/auth/ssh-keypair: the caller's SSH key pair (docs/backendai-api.md §10.4)."""

from __future__ import annotations

from pydantic import Field
from quart import Blueprint

from controlplane import sshkeys
from controlplane.api._context import core, requester
from controlplane.api._typed import CompatRequest, Reply, body, returns
from controlplane.errors import ObjectNotFound

bp = Blueprint("sshkeys", __name__)


class PublicKey(Reply):
    ssh_public_key: str | None = Field(alias="ssh_public_key")


class KeyPair(Reply):
    ssh_public_key: str = Field(alias="ssh_public_key")
    ssh_private_key: str = Field(alias="ssh_private_key")


class GivenKeyPair(CompatRequest):
    pubkey: str = Field(min_length=1, max_length=sshkeys.MAX_KEY_TEXT)
    privkey: str = Field(min_length=1, max_length=sshkeys.MAX_KEY_TEXT)


@bp.get("/auth/ssh-keypair")
@returns(PublicKey)
async def get_public_key() -> PublicKey:
    """The caller's SSH public key (null until one is generated or set)."""
    async with core().db() as db:
        return PublicKey(ssh_public_key=await sshkeys.public_key(db, requester().access_key))


@bp.get("/auth/ssh-keypair/private-key")
@returns(KeyPair)
async def get_key_pair() -> KeyPair:
    """The caller's SSH key pair, private key included (a Shipyard route: `shipyard ssh` and
    `scp` log in with it); 404 until one is generated or set."""
    access_key = requester().access_key
    async with core().db() as db:
        keys = await sshkeys.pair(db, core().secrets, access_key)
    if keys is None:
        raise ObjectNotFound("You have no SSH key pair yet: shipyard ssh-key generate")
    return KeyPair(ssh_public_key=keys.public_key, ssh_private_key=keys.private_key)


@bp.patch("/auth/ssh-keypair")
@returns(KeyPair)
async def regenerate() -> KeyPair:
    """A new ed25519 key pair for the caller, replacing the one it had."""
    access_key = requester().access_key
    keys = sshkeys.generate(f"shipyard:{access_key}")
    return await _store(access_key, keys)


@bp.post("/auth/ssh-keypair")
@returns(KeyPair)
@body(GivenKeyPair)
async def set_keys(data: GivenKeyPair) -> KeyPair:
    """Keep the caller's own key pair (OpenSSH public key, unencrypted private key)."""
    return await _store(requester().access_key, sshkeys.checked(data.pubkey, data.privkey))


async def _store(access_key: str, keys: sshkeys.SSHKeys) -> KeyPair:
    async with core().db() as db:
        await sshkeys.store(db, core().secrets, access_key, keys)
        await db.commit()
    return KeyPair(ssh_public_key=keys.public_key, ssh_private_key=keys.private_key)
