"""The writer of node reports (controlplane/dbwriter.py): order, replacement, batches."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from controlplane.dbwriter import DBWriter

pytestmark = pytest.mark.anyio


async def test_a_newer_report_takes_the_older_ones_place_in_line() -> None:
    writer, done = DBWriter(), []

    def job(name: str) -> Any:
        async def write() -> None:
            done.append(name)

        return write

    writer.submit(job("images of a, old"), key=("images", "a"))
    writer.submit(job("exit on b"))
    writer.submit(job("images of a, new"), key=("images", "a"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        with anyio.fail_after(5):
            await writer.drained()
        tg.cancel_scope.cancel()
    # a node reporting often is not pushed back behind the others, and the stale one is skipped
    assert done == ["images of a, new", "exit on b"]


async def test_heartbeats_queued_meanwhile_are_written_in_one_call() -> None:
    writer, calls = DBWriter(), []
    release = anyio.Event()

    async def slow() -> None:
        await release.wait()  # a slow write holds the writer

    async def write(items: list[str]) -> None:
        calls.append(items)

    writer.submit(slow)
    for node, beat in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1")]:
        writer.batch("heartbeats", write, node, beat)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        release.set()
        with anyio.fail_after(5):
            await writer.drained()
        writer.batch("heartbeats", write, "a", "a3")  # after the batch was written: a new one
        with anyio.fail_after(5):
            await writer.drained()
        tg.cancel_scope.cancel()
    assert calls == [["a2", "b1", "c1"], ["a3"]]
