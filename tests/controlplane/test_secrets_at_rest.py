"""Secrets at rest (issue 8, item 10): the database files are owner-only, secret keys are sealed
with a key kept outside the database, and databases with clear-text secret keys migrate."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from controlplane.api.app import create_app
from controlplane.config import ControlPlaneConfig
from controlplane.core import Core
from controlplane.db.engine import MIGRATIONS, create_engine
from controlplane.secretbox import SecretBox, SecretBoxError
from tests.controlplane.conftest import API, Keypair

pytestmark = pytest.mark.anyio


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_database_files_are_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "controlplane.db"
    database.touch(mode=0o644)  # as an older version left it
    database.chmod(0o644)
    config = ControlPlaneConfig(state_dir=tmp_path, node_token="t")
    engine = create_engine(config.effective_database_url)
    try:
        await Core(config, engine).prepare()
        files = [database, tmp_path / "controlplane.db-wal", tmp_path / "controlplane.db-shm"]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert _mode(config.secrets_key_path) == 0o600
    finally:
        await engine.dispose()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    engine = create_engine(f"sqlite+aiosqlite:///{fresh / 'new.db'}")
    await engine.dispose()
    assert _mode(fresh / "new.db") == 0o600


async def test_a_copy_of_the_database_alone_cannot_sign(api: API, tmp_path: Path) -> None:
    user = await api.call("POST", "/admin/keypairs", {"user": "u@example.com"})
    secrets = [api.admin.secret_key, user.body["secretKey"]]
    async with api.core.db() as db:  # written through to the database file
        await db.execute(text("SELECT 1"))
    if api.core.config.database_url.startswith("postgresql"):
        async with api.core.db() as db:
            dump = " ".join(
                str(row) for row in (await db.execute(text("SELECT * FROM keypairs"))).all()
            )
    else:
        path = Path(api.core.config.database_url.removeprefix("sqlite+aiosqlite:///"))
        dump = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*")).decode("latin-1")
    assert all(secret not in dump for secret in secrets)

    # the database with another key (the key file was not copied): the control plane refuses
    # to start rather than answer every signature with a mismatch
    other = ControlPlaneConfig(
        state_dir=tmp_path / "elsewhere",
        node_token="t",
        database_url=api.core.config.database_url,
        secrets_key_file=str(tmp_path / "another.key"),
    )
    engine = create_engine(other.effective_database_url)
    try:
        with pytest.raises(SecretBoxError, match="restore the secrets_key_file"):
            await Core(other, engine).prepare()
    finally:
        await engine.dispose()


def test_sealed_secrets_open_only_with_their_key_and_row(tmp_path: Path) -> None:
    box = SecretBox.load_or_create(tmp_path / "k")
    sealed = box.seal("s3cret", bound_to="AKIA1")
    assert "s3cret" not in sealed and box.unseal(sealed, bound_to="AKIA1") == "s3cret"
    with pytest.raises(SecretBoxError):
        box.unseal(sealed, bound_to="AKIA2")  # moved onto another keypair's row
    with pytest.raises(SecretBoxError):
        SecretBox.load_or_create(tmp_path / "other").unseal(sealed, bound_to="AKIA1")
    (tmp_path / "k").chmod(0o644)
    with pytest.raises(SecretBoxError, match="chmod 600"):
        SecretBox.load(tmp_path / "k")


async def test_clear_text_secret_keys_of_an_older_database_are_sealed(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:

            def to_0002(sync_conn: object) -> None:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "0002")

            await conn.run_sync(to_0002)
            user_id = uuid.uuid4()
            await conn.execute(text("INSERT INTO domains VALUES ('default', CURRENT_TIMESTAMP)"))
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, role, domain_name, created_at)"
                    " VALUES (:id, 'old@example.com', 'superadmin', 'default', CURRENT_TIMESTAMP)"
                ),
                {"id": user_id.hex if "sqlite" in database_url else user_id},
            )
            await conn.execute(
                text("INSERT INTO keypairs VALUES (:ak, :sk, :uid, true, true, CURRENT_TIMESTAMP)"),
                {
                    "ak": "AKIAOLDOLDOLDOLDOLD0",
                    "sk": "an-old-clear-secret",
                    "uid": user_id.hex if "sqlite" in database_url else user_id,
                },
            )
        config = ControlPlaneConfig(state_dir=tmp_path, node_token="t", database_url=database_url)
        core = Core(config, engine)
        assert await core.prepare() is None  # the admin existed
        async with engine.connect() as conn:
            (sealed,) = (await conn.execute(text("SELECT sealed_secret_key FROM keypairs"))).one()
        assert "an-old-clear-secret" not in sealed
        old = Keypair("AKIAOLDOLDOLDOLDOLD0", "an-old-clear-secret")
        api = API(create_app(core), core, old)
        assert (await api.call("GET", "/admin/keypairs")).status == 200
    finally:
        await engine.dispose()
