"""Database writes that a node's receive loop hands off instead of awaiting.

A node's WebSocket reader serves replies and run output for all of its kernels; if it awaited
each heartbeat's UPDATE, one slow write would hold all of them. It submits the write here and
goes on; one writer task (in Core's task group) does the writes in order. Writes that only
replace an older one (a node's latest image list) share a key, so a slow database makes the
queue skip stale ones instead of growing; the newer one takes the older one's place in line, so
a node that reports often is never pushed back behind the others. Heartbeats go in batches:
all those queued when the writer gets to them are written in one transaction (a thousand nodes
send two hundred a second, and one commit each would keep the writer busy).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

log = logging.getLogger(__name__)
Job = Callable[[], Coroutine[Any, Any, Any]]
BatchWrite = Callable[[list[Any]], Coroutine[Any, Any, Any]]


class DBWriter:
    def __init__(self) -> None:
        self._jobs: OrderedDict[object, Job] = OrderedDict()
        self._ready = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._count = 0
        self._batches: dict[str, dict[object, Any]] = {}  # by kind, then key

    def submit(self, job: Job, *, key: object = None) -> None:
        """Queue `job`; with a `key`, it replaces a queued job of the same key, in that job's
        place. Never blocks."""
        if key is None:
            self._count += 1
            key = ("unique", self._count)
        self._jobs[key] = job
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._ready.set()

    def batch(self, kind: str, write: BatchWrite, key: object, item: Any) -> None:
        """Queue `item` in the batch of its `kind`, which `write` gets whole (the items queued
        by the time the writer reaches it) in one call; an item replaces a queued one of the
        same key. Never blocks."""
        items = self._batches.get(kind)
        if items is None:
            items = self._batches[kind] = {}

            async def job() -> None:
                await write(list(self._batches.pop(kind).values()))  # later items: a new batch

            self.submit(job)
        items[key] = item

    async def drained(self) -> None:
        """Wait until every job queued so far is done (tests, orderly shutdown)."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            while self._jobs:
                _, job = self._jobs.popitem(last=False)
                try:
                    await job()
                except Exception:
                    log.exception("a database write from a node failed")
            self._idle.set()
