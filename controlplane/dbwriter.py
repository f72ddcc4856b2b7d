"""Database writes that a node's receive loop hands off instead of awaiting.

A node's WebSocket reader serves replies and run output for all of its kernels; if it awaited
each heartbeat's UPDATE, one slow write would hold all of them. It submits the write here and
goes on; one writer task (in Core's task group) does the writes in order. Writes that only
replace an older one (the latest heartbeat of a node) share a key, so a slow database makes
the queue skip stale ones instead of growing.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

log = logging.getLogger(__name__)
Job = Callable[[], Coroutine[Any, Any, Any]]


class DBWriter:
    def __init__(self) -> None:
        self._jobs: OrderedDict[object, Job] = OrderedDict()
        self._ready = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._count = 0

    def submit(self, job: Job, *, key: object = None) -> None:
        """Queue `job`; with a `key`, it replaces a queued job of the same key. Never blocks."""
        if key is None:
            self._count += 1
            key = ("unique", self._count)
        self._jobs.pop(key, None)
        self._jobs[key] = job
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._ready.set()

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
