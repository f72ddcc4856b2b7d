"""Runs started through the polling execute API (`POST /session/<ref>`), between two requests.

Each request of that API returns the next chunk of a run; the run waits here in between. The
client may choose the run's id (`runId`, as the 23.09 manager allows) or leave it to the server.
That id is only a name within its session: runs are keyed by (session, id), and the node sees
the server's own unique id, so two sessions (or owners) choosing the same id never meet. A run
is found only by its id together with its session and the keypair that owns the session (any
other combination is "no such run", never a hint that it exists). A run ends, and its buffer is
freed, when it finished and its last chunk was read, when its session ends, or when nobody read
it for `IDLE_EXPIRY` seconds.
"""

from __future__ import annotations

import time
import uuid

import anyio

from controlplane.errors import InvalidAPIParams, ObjectNotFound
from controlplane.nodehub import NodeHub
from controlplane.runs import Run

IDLE_EXPIRY = 600.0
_ENDED = ("TERMINATING", "TERMINATED", "CANCELLED", "ERROR")


class RunNotFound(ObjectNotFound):
    title = "No such run."


class HttpRuns:
    def __init__(self, hub: NodeHub, idle_expiry: float = IDLE_EXPIRY) -> None:
        self._hub = hub
        self.idle_expiry = idle_expiry
        self._runs: dict[tuple[uuid.UUID, str], Run] = {}  # by (session, the client's id)

    def __len__(self) -> int:
        return len(self._runs)

    def check_free(self, session_id: uuid.UUID, run_id: str) -> None:
        """Refuse to start a second run under an id that is in progress in this session."""
        if (session_id, run_id) in self._runs:
            raise InvalidAPIParams(
                f"run {run_id!r} is still in progress in this session: continue it (mode"
                " continue) or choose another runId"
            )

    def add(self, run: Run) -> None:
        self.check_free(run.session_id, run.client_run_id)
        self._runs[(run.session_id, run.client_run_id)] = run

    def get(self, run_id: object, session_id: uuid.UUID, access_key: str) -> Run:
        run = self._runs.get((session_id, run_id)) if isinstance(run_id, str) else None
        if run is None or run.access_key != access_key:
            raise RunNotFound(f"no run {run_id!r} in progress in this session")
        return run

    def end(self, run: Run) -> None:
        if self._runs.pop((run.session_id, run.client_run_id), None) is not None:
            self._hub.close_run(run.run_id)

    def session_changed(self, session_id: uuid.UUID, status: str) -> None:
        if status in _ENDED:
            for run in [r for r in self._runs.values() if r.session_id == session_id]:
                self.end(run)

    def expire(self) -> None:
        cutoff = time.monotonic() - self.idle_expiry
        for run in [r for r in self._runs.values() if r.last_used < cutoff]:
            self.end(run)

    async def expire_forever(self) -> None:
        """A job in Core's task group: end the runs nobody polls."""
        while True:
            await anyio.sleep(min(self.idle_expiry / 4, 60.0))
            self.expire()
