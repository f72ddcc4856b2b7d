"""Event-driven placement of pending sessions onto connected nodes, per scaling group.

Placing is all it does: a session it placed (now SCHEDULED, with its node) is handed to the
`on_placed` callback the server wires in (the session lifecycle starts the kernel).

Anything that frees or adds capacity (a create, a termination, a node registering) calls
`wake()`; a slow periodic sweep is only a safety net. The nodes, their capacity and images are
the hub's registered connections (`NodeHub.placeable`): no node row is read for a pass. What
sessions hold and which wait is kept in memory (`Ledger`, controlplane/ledger.py): built from
the database at start and on every sweep, and brought up to date on each wake from the
status-history rows written since, so a pass costs what changed plus the pending sessions it
looks at, never a re-read of all sessions.

Each scaling group orders its pending sessions by its policy (`fifo`, `lifo`, or `drf`: the
keypair with the smallest dominant share of the group's capacity goes first) and picks nodes
`concentrated` (the fullest that fits) or `dispersed` (the emptiest, the default). A session
that does not fit does not block the ones behind it. A request is placed whole on one node or
not at all, and the ledger is charged before the next session is looked at, so concurrent
creates cannot over-commit a node. Resource policies (controlplane/policies.py) are checked per
level; a session they hold back says which policy and which limit. Sessions of a batch pipeline
that are not ready (a dependency has not succeeded, or their start time has not come) are left
alone (controlplane/pipelines.py); only such sessions are read for it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import anyio
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

import wire
from controlplane import pipelines, policies
from controlplane import sessions as sessions_db
from controlplane.core import Core
from controlplane.db.models import Session, SessionDependency
from controlplane.ledger import Held, Ledger, Pending
from controlplane.lookups import PolicyBook
from controlplane.placement import NodePool

log = logging.getLogger(__name__)
SWEEP_INTERVAL = 10.0
REBUILD_EVERY = 6  # sweeps: the ledger is rebuilt from scratch once a minute when idle
_Move = tuple[Pending, str, str | None]  # session, reason, node (placements only)
COMMIT_EVERY = 500  # placements per transaction: bounds the latency of the first ones


class Scheduler:
    def __init__(self, core: Core, on_placed: Callable[[uuid.UUID], None]) -> None:
        self._core = core
        self._on_placed = on_placed
        self._wakeup = anyio.Event()
        self.ledger = Ledger()
        self._built = False

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        sweeps = 0
        while True:
            woken = False
            with anyio.move_on_after(SWEEP_INTERVAL):
                await self._wakeup.wait()
                woken = True
            self._wakeup = anyio.Event()
            if not woken:
                sweeps += 1
                if sweeps % REBUILD_EVERY == 0:
                    self._built = False
            try:
                await self.schedule_once()
            except Exception:  # the database went away for a moment: the next pass retries
                log.exception("a scheduling pass failed")
                self._built = False

    async def schedule_once(self) -> None:
        core = self._core
        async with core.db() as db:
            if not self._built:
                await self.ledger.rebuild(db)
                self._built = True
            else:
                await self.ledger.catch_up(db)
            if not self.ledger.has_pending():
                return
            held_back = await self._not_ready(db)
            groups = await core.lookups.scaling_groups(db)
            policy_of = _policies(await core.lookups.policy_book(db))
            nodes = core.hub.placeable()  # after the awaits above: as of now
            placements: list[_Move] = []
            reasons: list[_Move] = []
            for group_name in self.ledger.groups_with_pending():
                group = groups.get(group_name)
                opts = group.scheduler_opts if group is not None else {}
                pool = NodePool(
                    {n: facts for n, facts in nodes.items() if facts.scaling_group == group_name},
                    self.ledger,
                    spread=opts.get("agent_selection_strategy", "dispersed"),
                )
                policy = group.scheduler if group is not None else "fifo"
                for session in _order(policy, self.ledger, group_name, pool):
                    if session.id in held_back:
                        continue
                    node_id: str | None = None
                    if group is None or not group.is_active:
                        reason = f"waiting: the scaling group {group_name!r} is not active"
                    else:
                        node_id, reason = self._place(session, pool, policy_of(session))
                    if node_id is not None:
                        placements.append((session, f"placed on node {node_id}", node_id))
                        if len(placements) == COMMIT_EVERY:
                            await self._write(db, placements, "SCHEDULED")
                            placements = []
                    elif reason != session.status_info:
                        session.status_info = reason
                        reasons.append((session, reason, None))
                        if len(reasons) == COMMIT_EVERY:
                            await self._write(db, reasons, "PENDING")
                            reasons = []
            await self._write(db, placements, "SCHEDULED")
            await self._write(db, reasons, "PENDING")

    async def _not_ready(self, db: DBSession) -> set[uuid.UUID]:
        """The pending sessions of pipelines that may not start yet; their waiting reasons (or
        CANCELLED, when a dependency failed) are recorded and told here. Nothing is read while
        no waiting session is part of a pipeline."""
        if not self.ledger.has_pipeline_pending():
            return set()
        query = select(Session).where(
            Session.status == "PENDING",
            or_(
                Session.starts_at.is_not(None),
                Session.id.in_(select(SessionDependency.session_id)),
            ),
        )
        candidates = list(await db.scalars(query))
        if not candidates:
            return set()
        now = self._core.activity.clock.now()
        ready, events = await pipelines.hold_back(db, candidates, now)
        await self._core.publish(db, *events)
        return {s.id for s in candidates} - {s.id for s in ready}

    async def _write(self, db: DBSession, moves: list[_Move], to: str) -> None:
        """Record placements (`SCHEDULED`) or reasons (`PENDING`), commit, then tell: events
        to subscribers, placed sessions to their start."""
        events = await sessions_db.transition_many(db, moves, to, expect=("PENDING",))
        await db.commit()
        for event in events:
            self._core.events.publish(event)
        if to == "SCHEDULED":
            moved = {e.session_id for e in events}
            for session, _, _ in moves:
                if session.id not in moved:
                    self.ledger.forget(session.id)  # destroyed meanwhile: its slots are free
            for event in events:
                self._on_placed(event.session_id)

    def _place(
        self, session: Pending, pool: NodePool, policy: policies.EffectivePolicy
    ) -> tuple[str | None, str]:
        """Choose a node and charge the ledger for it; or None and why the session waits."""
        refusal = policy.refuses_scaling_group(session.scaling_group) or policy.refuses_image(
            session.image
        )
        if refusal:
            return None, f"waiting: {refusal}"
        for bound in policy.bounds:
            if bound.limits.counts:
                scope = session.scope(bound.level)
                refusal = bound.refuses(session.request, self.ledger.usage(bound.level, scope))
                if refusal:
                    return None, f"waiting: {refusal}"
        node_id, why = pool.choose(session.image, session.request)
        if node_id is None:
            return None, why
        self.ledger.hold(
            Held(
                session.id,
                node_id,
                session.request,
                session.access_key,
                session.user_id,
                session.project_id,
            )
        )
        pool.charge(node_id, session.request)
        return node_id, ""


def _order(policy: str, ledger: Ledger, group: str, pool: NodePool) -> Iterator[Pending]:
    waiting = ledger.pending_in(group)  # oldest first
    if policy == "lifo":
        return iter(waiting[::-1])
    if policy == "drf":
        return _dominant_resource_fairness(waiting, ledger, pool.capacity())
    return iter(waiting)


def _dominant_resource_fairness(
    waiting: list[Pending], ledger: Ledger, capacity: wire.Slots
) -> Iterator[Pending]:
    """Round after round, the keypair holding the smallest dominant share of the group's
    capacity gets its oldest waiting session looked at next."""
    queues: dict[str, list[Pending]] = {}
    for session in waiting:
        queues.setdefault(session.access_key, []).append(session)
    heads = dict.fromkeys(queues, 0)
    while heads:
        key = min(heads, key=lambda k: (_share(ledger.usage("keypair", k).slots, capacity), k))
        yield queues[key][heads[key]]
        heads[key] += 1
        if heads[key] == len(queues[key]):
            del heads[key]


def _share(held: wire.Slots, capacity: wire.Slots) -> float:
    return max((float(held[k] / capacity[k]) for k in held if capacity[k] > 0), default=0.0)


def _policies(book: PolicyBook) -> Callable[[Pending], policies.EffectivePolicy]:
    """The policies each waiting session is under (its keypair's, user's and project's)."""
    known: dict[tuple[str, ...], policies.EffectivePolicy] = {}

    def policy_of(session: Pending) -> policies.EffectivePolicy:
        key = tuple(
            book.names[level].get(session.scope(level), "default") for level in policies.LEVELS
        )
        if key not in known:
            known[key] = policies.effective_from(
                book.limits, zip(policies.LEVELS, key, strict=True)
            )
        return known[key]

    return policy_of
