"""Run one trio function inside a Textual thread worker, cancellable from the UI thread.

Textual runs on asyncio and the installer engine on trio, so each piece of engine work gets its
own `trio.run` in a worker thread. Textual's `Worker.cancel()` only raises a flag for thread
workers; to really stop the engine, `TrioCall.cancel()` hands `CancelScope.cancel` to the trio
run loop through its `TrioToken`, which is the one thread-safe door into a running trio loop.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")


class CallCancelled(Exception):
    """The trio function was cancelled through `TrioCall.cancel()` before it returned."""


class TrioCall:
    """One `trio.run` of one function; `run` blocks its (worker) thread, `cancel` is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        # Only covers a cancel() that arrives before trio has started; afterwards the scope does.
        self._cancel_requested = False

    @property
    def cancel_requested(self) -> bool:
        with self._lock:
            return self._cancel_requested

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` under `trio.run`; raise `CallCancelled` when `cancel()` stopped it."""

        async def main() -> T:
            with trio.CancelScope() as scope:
                with self._lock:
                    self._token = trio.lowlevel.current_trio_token()
                    self._scope = scope
                    if self._cancel_requested:
                        scope.cancel()
                try:
                    return await fn()
                finally:
                    with self._lock:
                        self._token = None
            raise CallCancelled

        return trio.run(main)

    def cancel(self) -> None:
        """Ask the running (or about to run) trio function to stop; returns at once."""
        with self._lock:
            self._cancel_requested = True
            token, scope = self._token, self._scope
        if token is not None and scope is not None:
            # RunFinishedError: it finished on its own in the meantime
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)
