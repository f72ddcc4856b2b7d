"""The scheduler's memory: which sessions wait (per scaling group) and what the others hold (per
node, keypair, user and project).

Built from the database (`rebuild`), then kept up to date from the status-history rows written
since (`catch_up`): every transition writes one (controlplane/sessions.py), with an id that only
grows, so the rows after the last one seen name every session that changed, and the ledger
re-reads just those. A transaction can commit a smaller id after a larger one (PostgreSQL
sequences): a hole in the ids is read again on the next passes until it fills, or for
`HOLE_GRACE` seconds (an id whose transaction rolled back never comes). Reading a session twice
is harmless: the ledger takes its current state, not the transition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

import wire
from controlplane.db.models import (
    ACTIVE_STATUSES,
    OCCUPYING_STATUSES,
    Session,
    SessionDependency,
    StatusChange,
)
from controlplane.policies import Level, Usage

HOLE_GRACE = 10.0

_COLUMNS = (
    Session.id,
    Session.name,
    Session.access_key,
    Session.user_id,
    Session.project_id,
    Session.scaling_group,
    Session.image,
    Session.type,
    Session.requested_slots,
    Session.created_at,
    Session.status,
    Session.status_info,
    Session.node_id,
    # a batch pipeline's session: it waits for its dependencies or its start time too
    (
        Session.starts_at.is_not(None) | exists().where(SessionDependency.session_id == Session.id)
    ).label("in_pipeline"),
)


@dataclass(slots=True)
class Pending:
    id: uuid.UUID
    name: str
    access_key: str
    user_id: uuid.UUID
    project_id: uuid.UUID
    scaling_group: str
    image: str
    type: str
    request: wire.Slots
    created_at: datetime
    status_info: str
    in_pipeline: bool  # it has dependencies or a start time

    def scope(self, level: Level) -> str:
        """Whose usage a policy at `level` counts for this session."""
        if level == "keypair":
            return self.access_key
        return str(self.user_id if level == "user" else self.project_id)


@dataclass(frozen=True, slots=True)
class Held:
    session_id: uuid.UUID
    node_id: str
    slots: wire.Slots
    access_key: str
    user_id: uuid.UUID
    project_id: uuid.UUID

    def scopes(self) -> Iterable[tuple[Level, str]]:
        return (
            ("keypair", self.access_key),
            ("user", str(self.user_id)),
            ("project", str(self.project_id)),
        )


class Ledger:
    def __init__(self) -> None:
        self._pending: dict[str, dict[uuid.UUID, Pending]] = {}
        self._held: dict[uuid.UUID, Held] = {}
        self._node_used: dict[str, wire.Slots] = {}
        self._usage: dict[tuple[Level, str], Usage] = {}
        self._seen = 0  # the last status-history id read
        self._holes: dict[int, float] = {}  # a missing id -> when it was first missed

    # --- reading ------------------------------------------------------------------------------

    def has_pending(self) -> bool:
        return any(self._pending.values())

    def has_pipeline_pending(self) -> bool:
        """Whether a waiting session is part of a batch pipeline (controlplane/pipelines.py)."""
        return any(p.in_pipeline for waiting in self._pending.values() for p in waiting.values())

    def groups_with_pending(self) -> list[str]:
        return sorted(g for g, waiting in self._pending.items() if waiting)

    def pending_in(self, group: str) -> list[Pending]:
        """The group's waiting sessions, oldest first."""
        return sorted(self._pending.get(group, {}).values(), key=lambda p: (p.created_at, p.id))

    def used_on(self, node_id: str) -> wire.Slots:
        return self._node_used.get(node_id, wire.Slots())

    def usage(self, level: Level, scope: str) -> Usage:
        return self._usage.get((level, scope), Usage())

    # --- changing -----------------------------------------------------------------------------

    def hold(self, held: Held) -> None:
        self.forget(held.session_id)
        self._held[held.session_id] = held
        self._node_used[held.node_id] = self.used_on(held.node_id) + held.slots
        for scope in held.scopes():
            self._usage[scope] = self._usage.get(scope, Usage()).plus(held.slots)

    def forget(self, session_id: uuid.UUID) -> None:
        held = self._held.pop(session_id, None)
        if held is not None:
            self._node_used[held.node_id] = self.used_on(held.node_id) - held.slots
            for scope in held.scopes():
                self._usage[scope] = self._usage.get(scope, Usage()).plus(held.slots, -1)
        for waiting in self._pending.values():
            waiting.pop(session_id, None)

    def _apply(self, row: Any) -> None:
        """Take one session's current state (a row of `_COLUMNS`)."""
        self.forget(row.id)
        request = wire.Slots.from_wire(row.requested_slots)
        if row.status == "PENDING":
            self._pending.setdefault(row.scaling_group, {})[row.id] = Pending(
                row.id,
                row.name,
                row.access_key,
                row.user_id,
                row.project_id,
                row.scaling_group,
                row.image,
                row.type,
                request,
                row.created_at,
                row.status_info,
                bool(row.in_pipeline),
            )
        elif row.status in OCCUPYING_STATUSES and row.node_id is not None:
            self.hold(
                Held(row.id, row.node_id, request, row.access_key, row.user_id, row.project_id)
            )

    async def rebuild(self, db: DBSession) -> None:
        """Read everything again; the history read from here on starts after the last row now."""
        self.__init__()  # type: ignore[misc]
        self._seen = int(await db.scalar(select(func.max(StatusChange.id))) or 0)
        for row in await db.execute(select(*_COLUMNS).where(Session.status.in_(ACTIVE_STATUSES))):
            self._apply(row)

    async def catch_up(self, db: DBSession) -> None:
        """Re-read the sessions whose status changed since the last pass: one query, the
        history rows written since with their sessions as they are now."""
        rows = list(
            await db.execute(
                select(StatusChange.id.label("history_id"), *_COLUMNS)
                .join(Session, Session.id == StatusChange.session_id)
                .where(StatusChange.id > self._seen)
                .order_by(StatusChange.id)
            )
        )
        if not rows:
            return
        self._seen = self._last_without_holes([row.history_id for row in rows])
        # a session that changed twice comes twice, as it is now each time: taken once
        for row in {row.id: row for row in rows}.values():
            self._apply(row)

    def _last_without_holes(self, ids: Sequence[int]) -> int:
        """The id up to which nothing can still come: before the first young hole."""
        now = time.monotonic()
        expected = self._seen + 1
        for history_id in ids:
            while expected < history_id:
                first_missed = self._holes.setdefault(expected, now)
                if now - first_missed < HOLE_GRACE:
                    return expected - 1
                del self._holes[expected]
                expected += 1
            self._holes.pop(history_id, None)
            expected = history_id + 1
        return expected - 1
