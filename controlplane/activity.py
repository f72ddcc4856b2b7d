"""The clock Core's periodic jobs read, and what the idle checks learn about each session:
when it last did something (code started or finished running), and its utilization samples.

Kept in memory: after a restart every session counts as active from then on, which errs on the
side of not ending a session that may be in use.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

MAX_SAMPLES = 512  # per session: at one a minute, over eight hours


class Clock:
    """Wall-clock time, and sleeping by it. Tests inject controlplane.testing.ManualClock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


@dataclass(frozen=True)
class Sample:
    at: datetime
    cpu_pct: float
    gpu_pct: float | None  # None: the session has no GPU


class SessionActivity:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._last: dict[uuid.UUID, datetime] = {}
        self._samples: dict[uuid.UUID, deque[Sample]] = {}
        self._checks: dict[uuid.UUID, tuple[datetime, dict[str, float]]] = {}

    def touch(self, session_id: uuid.UUID) -> None:
        """The session did something a user would call use (code started or finished)."""
        self._last[session_id] = self.clock.now()

    def last(self, session_id: uuid.UUID) -> datetime | None:
        return self._last.get(session_id)

    def sample(self, session_id: uuid.UUID, cpu_pct: float, gpu_pct: float | None) -> None:
        """A utilization reading of the session's containers (percent of what it holds)."""
        samples = self._samples.setdefault(session_id, deque(maxlen=MAX_SAMPLES))
        samples.append(Sample(self.clock.now(), cpu_pct, gpu_pct))

    def low_since(
        self, session_id: uuid.UUID, min_cpu_pct: float, min_gpu_pct: float
    ) -> datetime | None:
        """Since when every sample has been below both thresholds (a GPU reading counts only
        where there is a GPU); None when the latest one is not, or there is none."""
        since = None
        for s in reversed(self._samples.get(session_id, ())):
            low = s.cpu_pct < min_cpu_pct and (s.gpu_pct is None or s.gpu_pct < min_gpu_pct)
            if not low:
                break
            since = s.at
        return since

    def report(self, session_id: uuid.UUID, left: dict[str, float]) -> None:
        """What the idle checks found in their last round: seconds left under each check."""
        self._checks[session_id] = (self.clock.now(), left)

    def idle_checks(self, session_id: uuid.UUID) -> dict[str, object]:
        """Backend.AI's `idle_checks` of a session (docs/backendai-api.md §13.6), as of now."""
        at, left = self._checks.get(session_id, (self.clock.now(), {}))
        elapsed = (self.clock.now() - at).total_seconds()
        return {
            check: {
                "remaining": max(0.0, seconds - elapsed),
                "remaining_time_type": "expire_after",
                "extra": None,
            }
            for check, seconds in left.items()
        }

    def forget(self, session_id: uuid.UUID) -> None:
        self._last.pop(session_id, None)
        self._samples.pop(session_id, None)
        self._checks.pop(session_id, None)
