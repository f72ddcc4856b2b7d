"""Batch pipelines: sessions that start only after others succeeded (`--depends`) or not before
a given time (`--starts-at`), as Backend.AI's manager has them (docs/backendai-api.md §13.5).

The scheduler asks `hold_back` which pending sessions are not ready yet and leaves those alone;
a session whose dependency ended without success is cancelled here, with the reason. Times come
from Core's clock (`core.activity.clock`), so tests move time instead of sleeping; the
scheduler's periodic sweep (and every change) starts a session within seconds of its time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import sessions as sessions_db
from controlplane.db.models import Keypair, Session, SessionDependency
from controlplane.errors import InvalidAPIParams, SessionNotFound
from controlplane.events import SessionEvent

_UNITS = {
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}  # fmt: skip
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)")
_ENDED = ("TERMINATED", "CANCELLED", "ERROR")


def parse_starts_at(text: str, now: datetime) -> datetime:
    """ISO 8601 (UTC when no zone is given), else a delay from now: "30m", "1h", "1d1hr",
    "2hours 15min", "20sec", or a number of seconds. ValueError says what is accepted."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return now + timedelta(seconds=_seconds(text))
    return when if when.tzinfo is not None else when.replace(tzinfo=now.tzinfo)


def _seconds(text: str) -> float:
    total, pos, lowered = 0.0, 0, text.strip().lower()
    if lowered.replace(".", "", 1).isdigit():
        return float(lowered)
    while pos < len(lowered):
        match = _DURATION.match(lowered, pos)
        if match is None or match.group(2) not in _UNITS:
            raise ValueError(
                f"starts_at {text!r} is neither an ISO 8601 time nor a delay such as 30m, 1h,"
                " 1d1hr, '2hours 15min' or a number of seconds"
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total


def _ended_unsuccessful(session: Session) -> bool:
    return session.status in _ENDED and session.result != "SUCCESS"


async def resolve_dependencies(
    db: DBSession, owner: Keypair, refs: Sequence[str]
) -> list[uuid.UUID]:
    """The owner's sessions (ended ones too) named by id or name; 400 naming an unknown one."""
    found: list[uuid.UUID] = []
    for ref in refs:
        try:
            session = await sessions_db.find(db, owner, ref)
        except SessionNotFound:
            raise InvalidAPIParams(
                "Unknown session ID or name in the dependency list", data={"session_ref": ref}
            ) from None
        if session.id not in found:
            found.append(session.id)
    return found


async def hold_back(
    db: DBSession, pending: Sequence[Session], now: datetime
) -> tuple[list[Session], list[SessionEvent | None]]:
    """Split PENDING sessions into those the scheduler may place and events for the others:
    a new waiting reason, or CANCELLED when a dependency ended without success."""
    needs = await dependencies_of(db, [s.id for s in pending])
    ready: list[Session] = []
    events: list[SessionEvent | None] = []
    for session in pending:
        deps = needs.get(session.id, [])
        # ended without success (a batch that failed, anything cancelled or destroyed)
        failed = [
            d
            for d in deps
            if d.result != "SUCCESS" and (d.status in _ENDED or d.result == "FAILURE")
        ]
        waiting = [d for d in deps if d.result != "SUCCESS" and d not in failed]
        if failed:
            why = failed[0].status_info or failed[0].status
            reason = f"dependency {failed[0].name} did not succeed ({why})"
            status = "CANCELLED"
        elif waiting:
            names = ", ".join(d.name for d in waiting)
            reason, status = f"waiting for dependencies to succeed: {names}", "PENDING"
        elif session.starts_at is not None and session.starts_at > now:
            reason, status = f"scheduled to start at {session.starts_at.isoformat()}", "PENDING"
        else:
            ready.append(session)
            continue
        if (status, reason) != (session.status, session.status_info):
            event = await sessions_db.transition(db, session, status, reason, expect=("PENDING",))
            if event is not None:
                events.append(event)
    return ready, events


async def dependencies_of(
    db: DBSession, session_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Session]]:
    """Each session's dependencies (for `compute_session { dependencies { name id } }`)."""
    rows = await db.execute(
        select(SessionDependency.session_id, Session)
        .join(Session, Session.id == SessionDependency.depends_on)
        .where(SessionDependency.session_id.in_(session_ids))
        .order_by(Session.created_at)
    )
    found: dict[uuid.UUID, list[Session]] = {}
    for session_id, dependency in rows.all():
        found.setdefault(session_id, []).append(dependency)
    return found
