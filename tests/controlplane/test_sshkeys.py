"""/auth/ssh-keypair (docs/backendai-api.md §10.4): each keypair's own SSH key pair."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import select

from controlplane import sshkeys
from controlplane.db.models import SSHKeypair
from tests.controlplane.conftest import API, Keypair

pytestmark = pytest.mark.anyio


async def _user(api: API, email: str) -> Keypair:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    return Keypair(created.body["accessKey"], created.body["secretKey"])


async def test_a_generated_pair_is_a_working_openssh_pair(api: API, tmp_path: Path) -> None:
    assert (await api.call("GET", "/auth/ssh-keypair")).body == {"ssh_public_key": None}
    made = await api.call("PATCH", "/auth/ssh-keypair")
    assert made.status == 200
    public, private = made.body["ssh_public_key"], made.body["ssh_private_key"]
    assert public.startswith("ssh-ed25519 ") and public.endswith("\n")
    key = tmp_path / "id"
    key.write_text(private)
    key.chmod(0o600)
    derived = await anyio.run_process(["ssh-keygen", "-y", "-f", str(key)])  # OpenSSH reads it
    assert derived.stdout.decode().split()[:2] == public.split()[:2]
    assert (await api.call("GET", "/auth/ssh-keypair")).body == {"ssh_public_key": public}
    async with api.core.db() as db:
        row = await db.scalar(select(SSHKeypair))
        assert row is not None and "PRIVATE" not in row.sealed_private_key  # sealed at rest


async def test_a_given_pair_is_checked_and_kept_per_keypair(api: API) -> None:
    mine, other_pair = sshkeys.generate("a"), sshkeys.generate("b")
    given = await api.call(
        "POST",
        "/auth/ssh-keypair",
        {"pubkey": mine.public_key + "  \n", "privkey": mine.private_key},
    )
    assert given.status == 200
    assert given.body["ssh_public_key"] == mine.public_key
    other = await _user(api, "other@example.com")
    assert (await api.call("GET", "/auth/ssh-keypair", keypair=other)).body == {
        "ssh_public_key": None
    }
    for body, words in [
        ({"pubkey": other_pair.public_key, "privkey": mine.private_key}, "not the public key"),
        ({"pubkey": "ssh-rsa AAAA", "privkey": mine.private_key}, "not an OpenSSH public key"),
        ({"pubkey": mine.public_key, "privkey": "nope"}, "not an unencrypted OpenSSH"),
        ({"pubkey": mine.public_key}, "privkey"),
    ]:
        refused = await api.call("POST", "/auth/ssh-keypair", body)
        assert refused.status == 400, refused.body
        assert words in str(refused.body)
    assert (await api.call("GET", "/auth/ssh-keypair")).body["ssh_public_key"] == mine.public_key


async def test_the_private_key_is_its_owners_alone(api: API) -> None:
    """`shipyard ssh` logs in with the pair the platform keeps: its owner can read the private
    key back; anyone else reads only their own (none yet: 404, never someone else's)."""
    path = "/auth/ssh-keypair/private-key"
    assert (await api.call("GET", path)).status == 404
    made = await api.call("PATCH", "/auth/ssh-keypair")
    again = await api.call("GET", path)
    assert again.status == 200
    assert again.body == made.body
    other = await _user(api, "other@example.com")
    refused = await api.call("GET", path, keypair=other)
    assert refused.status == 404
    assert "ssh-key generate" in str(refused.body)
    assert made.body["ssh_private_key"] not in str(refused.body)
