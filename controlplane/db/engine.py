"""Database engine, sessions and migrations (SQLite via aiosqlite by default, or PostgreSQL)."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as DBSession
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from controlplane.secretbox import SecretBox

MIGRATIONS = Path(__file__).with_name("migrations")


def _private_sqlite_files(url: str) -> None:
    """The database and its -wal/-shm hold secrets and sessions: owner-only, also when an older
    version made them 0644. SQLite gives the -wal and -shm files the database file's mode, so
    creating that file 0600 first is enough for the others."""
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if name.exists():
            name.chmod(0o600)


async def dispose(engine: AsyncEngine) -> None:
    """Close the engine's connections. A connection that a cancelled task left checked out is
    closed by SQLAlchemy in a task of its own once the garbage collector finds it; collect now
    and let those closes finish first: after dispose, aiosqlite's close of such a connection
    waits forever on its stopped thread (a hang at shutdown)."""
    gc.collect()
    closing = [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("_terminate_graceful_close")
    ]
    if closing:
        await asyncio.wait(closing, timeout=5)
    await engine.dispose()


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        _private_sqlite_files(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)


def sessionmaker(
    engine: AsyncEngine, session_class: type[Session] = Session
) -> async_sessionmaker[DBSession]:
    """Sessions on `engine`; `session_class` is the synchronous Session they wrap (one with event
    listeners: controlplane/memo.py)."""
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=session_class)


def _alembic_config(connection: Connection, secret_box: SecretBox) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    cfg.attributes["secret_box"] = secret_box  # 0004 seals clear-text secret keys with it
    return cfg


async def migrate(engine: AsyncEngine, secret_box: SecretBox) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync_conn: command.upgrade(_alembic_config(sync_conn, secret_box), "head")
        )


def head_revision() -> str | None:
    """The newest schema revision this program knows."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


async def revisions(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(the database's schema revision, the newest one this program knows); None for a database
    without a schema yet."""

    def read(sync_conn: Connection) -> tuple[str | None, str | None]:
        return MigrationContext.configure(sync_conn).get_current_revision(), head_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)
