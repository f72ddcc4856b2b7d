"""Idle checks that end sessions (docs/backendai-api.md §13.6): no activity for the policy's
idle timeout (`idle-timeout`), running longer than its maximum lifetime
(`max-lifetime-exceeded`), or utilization below its thresholds for a whole window
(`idle-utilization`). Before ending a session the checker warns once per check, `warn_before`
ahead: the session's status_info says so (as `session info` shows) and an event goes out.
The session then ends TERMINATED with the check's reason as its status_info.

Time is Core's clock (controlplane/activity.py), so tests drive the checks by advancing it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import anyio
from sqlalchemy import select

from controlplane import lifecycle, policies
from controlplane.core import Core
from controlplane.db.models import Keypair, Session
from controlplane.events import SessionEvent
from controlplane.sessions import transition

log = logging.getLogger(__name__)
INTERVAL = 10.0  # seconds of Core's clock between two rounds of checks
REASONS = {
    "network_timeout": "idle-timeout",
    "session_lifetime": "max-lifetime-exceeded",
    "utilization": "idle-utilization",
}


@dataclass(frozen=True)
class IdlePolicy:
    """Seconds; 0 turns a check off."""

    idle_timeout: float = 0
    max_session_lifetime: float = 0
    utilization_window: float = 0
    min_cpu_pct: float = 0
    min_gpu_pct: float = 0
    warn_before: float = 60


PolicyFor = Callable[[Session], Awaitable[IdlePolicy]]


def from_resource_policies(core: Core) -> PolicyFor:
    """The idle timeout, lifetime limit and utilization check of the strictest resource
    policy the session is under (its keypair's, its user's, its project's;
    controlplane/policies.py)."""

    async def policy_for(session: Session) -> IdlePolicy:
        async with core.db() as db:
            keypair = await db.get(Keypair, session.access_key)
            if keypair is None:
                return IdlePolicy()
            effective = await policies.effective_policy(db, keypair, session.project_id)
        window, min_cpu, min_gpu = effective.utilization
        return IdlePolicy(
            idle_timeout=effective.idle_timeout,
            max_session_lifetime=effective.max_session_lifetime,
            utilization_window=window,
            min_cpu_pct=min_cpu,
            min_gpu_pct=min_gpu,
        )

    return policy_for


def _running_since(session: Session) -> datetime:
    started = [c.at for c in session.history if c.status == "RUNNING"]
    return started[-1] if started else session.created_at


def remaining(core: Core, session: Session, policy: IdlePolicy, now: datetime) -> dict[str, float]:
    """Seconds left under each enabled check that applies now (what `idle_checks` reports)."""
    since = _running_since(session)
    left: dict[str, float] = {}
    if policy.idle_timeout > 0:
        last = max(since, core.activity.last(session.id) or since)
        left["network_timeout"] = policy.idle_timeout - (now - last).total_seconds()
    if policy.max_session_lifetime > 0:
        left["session_lifetime"] = policy.max_session_lifetime - (now - since).total_seconds()
    if policy.utilization_window > 0:
        low = core.activity.low_since(session.id, policy.min_cpu_pct, policy.min_gpu_pct)
        if low is not None:
            left["utilization"] = (
                policy.utilization_window - (now - max(low, since)).total_seconds()
            )
    return left


class IdleChecker:
    def __init__(self, core: Core, policy_for: PolicyFor | None = None) -> None:
        self.core = core
        self.policy_for = policy_for or from_resource_policies(core)
        self._warned: dict[uuid.UUID, set[str]] = {}

    async def run(self) -> None:
        while True:
            await self.check_once()
            await self.core.activity.clock.sleep(INTERVAL)

    async def check_once(self) -> None:
        now = self.core.activity.clock.now()
        async with self.core.db() as db:
            running = list(await db.scalars(select(Session).where(Session.status == "RUNNING")))
        alive = {s.id for s in running}
        for gone in set(self._warned) - alive:
            del self._warned[gone]
        for session in running:
            try:
                await self._check(session, now)
            except Exception:  # one session's trouble must not stop the checks of the others
                log.exception("idle check of session %s failed", session.id)

    async def _check(self, session: Session, now: datetime) -> None:
        policy = await self.policy_for(session)
        left = remaining(self.core, session, policy, now)
        self.core.activity.report(session.id, left)
        warned = self._warned.setdefault(session.id, set())
        warned &= {check for check, seconds in left.items() if seconds <= policy.warn_before}
        if not left:
            return
        check, seconds = min(left.items(), key=lambda item: item[1])
        if seconds <= 0:
            await self._end(session.id, REASONS[check])
        elif seconds <= policy.warn_before and check not in warned:
            warned.add(check)
            await self._warn(session.id, check, seconds)

    async def _warn(self, session_id: uuid.UUID, check: str, seconds: float) -> None:
        reason = f"idle warning: ends in {int(seconds)}s ({REASONS[check]}) unless used"
        async with self.core.db() as db:
            session = await db.get(Session, session_id)
            if session is None or session.status != "RUNNING":
                return
            session.status_info = reason
            event = SessionEvent(
                session.id,
                session.name,
                session.access_key,
                "RUNNING",
                reason,
                notice="idle_warning",
            )
            await db.commit()
        self.core.events.publish(event)

    async def _end(self, session_id: uuid.UUID, reason: str) -> None:
        async with self.core.db() as db:
            session = await db.get(Session, session_id)
            if session is None:
                return
            event = await transition(db, session, "TERMINATING", reason, expect=("RUNNING",))
            await self.core.publish(db, event)
        if event is None:
            return  # it ended meanwhile
        log.info("ending session %s: %s", session_id, reason)
        self._warned.pop(session_id, None)
        self.core.activity.forget(session_id)
        with anyio.CancelScope(shield=True):
            await lifecycle.finish_termination(self.core, session_id, reason, forced=True)
