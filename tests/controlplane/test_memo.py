"""controlplane/memo.py: what memory keeps is dropped by a commit that writes its tables, and a
read that raced such a commit does not put back what the commit replaced."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import insert, update

from controlplane.db.engine import create_engine, dispose, sessionmaker
from controlplane.db.models import Base, Domain, ResourcePreset
from controlplane.memo import Memo, session_class

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_load_that_raced_a_clear_is_not_kept() -> None:
    memo: Memo[str, str] = Memo(["t"])
    loading, cleared = anyio.Event(), anyio.Event()

    async def stale() -> str:
        loading.set()
        await cleared.wait()
        return "old"

    async with anyio.create_task_group() as tg:
        tg.start_soon(memo.get_or_load, "k", stale)
        await loading.wait()
        memo.clear()  # a commit while the old value was being read
        cleared.set()
    assert len(memo) == 0

    async def fresh() -> str:
        return "new"

    assert await memo.get_or_load("k", fresh) == "new"
    assert await memo.get_or_load("k", stale) == "new"  # kept: no load this time


async def test_commits_clear_what_was_read_from_the_tables_they_wrote(tmp_path: Path) -> None:
    presets: Memo[str, int] = Memo(["resource_presets"])
    others: Memo[str, int] = Memo(["keypairs"])
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    db = sessionmaker(engine, session_class([presets, others]))

    async def one() -> int:
        return 1

    async def fill() -> None:
        await presets.get_or_load("p", one)
        await others.get_or_load("o", one)

    try:
        await fill()
        async with db() as session:  # a row added (a flush)
            session.add(ResourcePreset(name="small", resource_slots={"cpu": "1"}))
            assert len(presets) == 1  # not before the commit
            await session.commit()
        assert (len(presets), len(others)) == (0, 1)
        await fill()
        async with db() as session:  # a bulk statement
            await session.execute(update(ResourcePreset).values(shared_memory=1))
            await session.commit()
        assert len(presets) == 0
        await fill()
        async with db() as session:  # rolled back: nothing changed
            await session.execute(insert(ResourcePreset).values(name="big", resource_slots={}))
            await session.rollback()
        async with db() as session:  # another table
            session.add(Domain(name="other"))
            await session.commit()
        assert len(presets) == 1
    finally:
        await dispose(engine)
