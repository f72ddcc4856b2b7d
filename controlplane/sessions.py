"""Sessions as data: resource requests, lookup by reference, state transitions.

Transitions are compare-and-set updates (`expect` the statuses you think it is in), so a destroy
racing a kernel start cannot be overwritten; every transition writes a history row.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, Table, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession as DBSession
from sqlalchemy.orm import QueryableAttribute, raiseload

import wire
from controlplane import listing, tenancy
from controlplane.db.models import (
    ACTIVE_STATUSES,
    DEAD_STATUSES,
    OCCUPYING_STATUSES,
    Image,
    Keypair,
    Node,
    Session,
    StatusChange,
)
from controlplane.db.types import utcnow
from controlplane.errors import (
    SessionNotFound,
    UnsatisfiableResources,
)
from controlplane.events import SessionEvent
from controlplane.vfolders import MountRequest

# session names: 4-64 of these, starting and ending with a letter, digit or "_"
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*[A-Za-z0-9_]$"
NAME_LENGTH = (4, 64)
KNOWN_SLOTS = ("cpu", "mem", "cuda.device", "cuda.shares", "rocm.device")
WHOLE_SLOTS = ("cuda.device", "rocm.device")  # whole devices only
# what accelerator plugins declare besides the well-known ones: `<vendor>.<kind>`; whether some
# node offers it is `check_satisfiable`'s question
PLUGIN_SLOT = re.compile(r"^[a-z][a-z0-9_-]{0,31}\.[a-z][a-z0-9_-]{0,31}$")
DEFAULT_RESOURCES = {"cpu": "1", "mem": "1g"}
# The smallest CPU share cgroups enforce as docker sets it: NanoCpus below 10_000_000 (0.01 CPU)
# is refused by the engine, and NanoCpus=1 would become "no limit" (quota -1).
MIN_CPU, MAX_CPU = Decimal("0.01"), Decimal(1024)
# docker refuses less than 6 MiB; an interpreter needs far more than that to start
MIN_MEM, MAX_MEM = 64 * 2**20, 2**46
# A session row alone: its kernels and history (loaded with it by default, two more queries)
# raise if touched. For the paths that need neither: creating, starting, destroying.
ROW_ONLY = (raiseload(Session.kernels), raiseload(Session.history))


@dataclass(frozen=True)
class CreateParams:
    name: str
    image: str
    type: str  # INTERACTIVE | BATCH
    resources: wire.Slots
    environ: dict[str, str]
    startup_command: str | None
    enqueue_only: bool
    max_wait: float
    reuse: bool
    tag: str | None
    owner_access_key: str | None
    # the project (Backend.AI's group) by name and its domain; None: the owner's default ones
    group: str | None = None
    domain: str | None = None
    mounts: MountRequest = field(default_factory=MountRequest)
    scaling_group: str | None = None  # None: the first the project may use
    dependencies: tuple[str, ...] = ()  # session ids or names that must succeed first
    starts_at: str | None = None  # as the client typed it (pipelines.parse_starts_at)


def requested_slots(raw: Mapping[str, str | int | float]) -> wire.Slots:
    """What a create asks for, with the defaults filled in; ValueError says what to fix."""
    unknown = sorted(k for k in raw if k not in KNOWN_SLOTS and not PLUGIN_SLOT.match(k))
    if unknown:
        raise ValueError(
            f"unknown resource slot(s) {', '.join(unknown)}; known: {', '.join(KNOWN_SLOTS)}"
            " and accelerator plugins' <vendor>.<kind> names"
        )
    try:
        slots = wire.Slots({**DEFAULT_RESOURCES, **{k: _quantity(v) for k, v in raw.items()}})
    except wire.SlotsError as exc:
        raise ValueError(str(exc)) from exc
    for name in WHOLE_SLOTS:
        if slots[name] != slots[name].to_integral_value():
            raise ValueError(f"{name} counts whole devices, not {slots[name]}; use cuda.shares")
    if not MIN_CPU <= slots["cpu"] <= MAX_CPU:
        raise ValueError(f"cpu must be between {MIN_CPU} and {MAX_CPU}, not {slots['cpu']}")
    if not MIN_MEM <= slots["mem"] <= MAX_MEM:
        raise ValueError(
            f"mem must be between {wire.format_bytes(MIN_MEM)} and {wire.format_bytes(MAX_MEM)},"
            f" not {wire.format_bytes(slots['mem'])}"
        )
    return slots


def _quantity(value: str | int | float) -> str | int:
    return value if isinstance(value, str | int) else repr(value)


async def check_satisfiable(
    db: DBSession, resources: wire.Slots, connected: Iterable[wire.Slots]
) -> None:
    """Refuse what no known node could ever host; with no node known yet, the session waits.
    `connected`: the capacity of the nodes connected now (known ones, from memory); when one
    of them could host it, no node row is read."""
    if any(resources.fits_in(capacity) for capacity in connected):
        return
    nodes = {
        node_id: wire.Slots.from_wire(slots)
        for node_id, slots in await db.execute(select(Node.id, Node.available_slots))
    }
    if not nodes:
        return
    if any(resources.fits_in(capacity) for capacity in nodes.values()):
        return
    largest = max(nodes, key=lambda node_id: nodes[node_id]["mem"])
    capacity = nodes[largest]
    raise UnsatisfiableResources(
        f"no node can ever provide {resources.describe()}; the largest node, {largest},"
        f" has {capacity.describe()} in all",
        data={"requested": resources.to_wire(), "largest_node": capacity.to_wire()},
    )


async def find(
    db: DBSession,
    owner: Keypair,
    ref: str,
    *,
    owner_access_key: str | None = None,
    row_only: bool = False,
) -> Session:
    """The owner's session by UUID or name (the active one first, else the newest);
    `row_only`: without its kernels and history (`ROW_ONLY`)."""
    access_key = owner.access_key
    if owner_access_key and owner_access_key != owner.access_key:
        if not owner.is_admin:
            raise SessionNotFound(f"Session (id={ref}) does not exist.")
        access_key = owner_access_key
    query = select(Session).where(Session.access_key == access_key)
    if row_only:
        query = query.options(*ROW_ONLY)
    if access_key != owner.access_key and (domain := tenancy.managed_domain(owner)) is not None:
        query = query.where(Session.domain_name == domain)  # a domain admin's reach
    try:
        session_id = uuid.UUID(ref)
    except ValueError:
        session_id = None
    if session_id is not None:
        found = await db.scalar(query.where(Session.id == session_id))
        if found is not None:
            return found
    candidates = list(
        await db.scalars(query.where(Session.name == ref).order_by(Session.created_at.desc()))
    )
    active = [s for s in candidates if s.status in ACTIVE_STATUSES]
    if active:
        return active[0]
    if candidates:
        return candidates[0]
    raise SessionNotFound(f"Session (id={ref}) does not exist.")


async def find_active_by_name(db: DBSession, access_key: str, name: str) -> Session | None:
    return await db.scalar(
        select(Session)
        .where(
            Session.access_key == access_key,
            Session.name == name,
            Session.status.in_(ACTIVE_STATUSES),
        )
        .options(*ROW_ONLY)
    )


async def list_for(db: DBSession, owner: Keypair, *, include_dead: bool) -> list[Session]:
    query = select(Session).where(Session.access_key == owner.access_key)
    if not include_dead:
        query = query.where(Session.status.in_(ACTIVE_STATUSES))
    return list(await db.scalars(query.order_by(Session.created_at)))


class SessionRef(Protocol):
    """What a transition needs to know of a session (a row, or the scheduler's copy)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def access_key(self) -> str: ...


async def transition(
    db: DBSession,
    session: SessionRef,
    to: str,
    reason: str,
    *,
    expect: tuple[str, ...],
    exit_code: int | None = None,
    **values: Any,
) -> SessionEvent | None:
    """Move `session` to `to` if it is still in one of `expect`; None when it was not.

    The caller commits, then publishes the returned event.
    """
    now = utcnow()
    extra: dict[str, Any] = dict(values)
    if to in DEAD_STATUSES:
        extra.setdefault("terminated_at", now)
    result = await db.execute(
        update(Session)
        .where(Session.id == session.id, Session.status.in_(expect))
        .values(status=to, status_info=reason, status_changed=now, **extra)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    db.add(StatusChange(session_id=session.id, status=to, reason=reason, at=now))
    return SessionEvent(session.id, session.name, session.access_key, to, reason, exit_code)


async def transition_many(
    db: DBSession,
    moves: Sequence[tuple[SessionRef, str, str | None]],
    to: str,
    *,
    expect: tuple[str, ...],
) -> list[SessionEvent]:
    """`transition` for many sessions at once, for moves only the scheduler makes (placing,
    saying why a session waits): each move is (session, reason, node id or None to leave it).
    Returns the events of the sessions that were still in one of `expect`, which alone moved.
    One prepared statement runs for all (executemany); when the driver counts the rows it
    changed and all moved (SQLite), that is all; else one query reads which moved: in the same
    transaction, a session in `to` now is one this call moved."""
    if not moves:
        return []
    now = utcnow()
    table = cast(Table, Session.__table__)
    values: dict[str, Any] = {
        "status": to,
        "status_info": bindparam("_reason"),
        "status_changed": now,
    }
    if any(node is not None for _, _, node in moves):
        values["node_id"] = bindparam("_node")
    result = await db.execute(
        update(table)
        .where(table.c.id == bindparam("_id"), or_(*(table.c.status == s for s in expect)))
        .values(values),
        [{"_id": s.id, "_reason": reason, "_node": node} for s, reason, node in moves],
    )
    by_id = {session.id: (session, reason, node) for session, reason, node in moves}
    if _all_changed(result, len(by_id)) and len(by_id) == len(moves):
        moved = list(by_id)
    else:
        moved = list(
            await db.scalars(select(Session.id).where(Session.id.in_(by_id), Session.status == to))
        )
    if not moved:
        return []
    await db.execute(
        insert(StatusChange),
        [{"session_id": i, "status": to, "reason": by_id[i][1], "at": now} for i in moved],
    )
    return [
        SessionEvent(
            i, by_id[i][0].name, by_id[i][0].access_key, to, by_id[i][1], node_id=by_id[i][2]
        )
        for i in moved
    ]


def _all_changed(result: Any, rows: int) -> bool:
    """Whether an UPDATE run for `rows` parameter sets changed that many rows, by a count the
    driver vouches for (SQLite's for many; most drivers' for one)."""
    if not isinstance(result, CursorResult):
        return False
    sane = result.supports_sane_multi_rowcount() if rows > 1 else result.supports_sane_rowcount()
    return sane and result.rowcount == rows


def occupying(session: Session) -> dict[str, str]:
    if session.status in ("SCHEDULED", "PREPARING", "RUNNING", "TERMINATING"):
        return dict(session.requested_slots)
    return {}


async def architectures(
    db: DBSession, sessions: Collection[Session]
) -> dict[uuid.UUID, str | None]:
    """Each session's CPU architecture: its node's once placed, before that its image's (None
    while neither is known)."""
    nodes = select(Node.id, Node.architecture).where(Node.id.in_({s.node_id for s in sessions}))
    by_node: dict[str, str] = {row.id: row.architecture for row in await db.execute(nodes)}
    images = select(Image.name, Image.architecture).where(
        Image.name.in_({s.image for s in sessions})
    )
    by_image: dict[str, str] = {row.name: row.architecture for row in await db.execute(images)}
    return {s.id: by_node.get(s.node_id or "") or by_image.get(s.image) for s in sessions}


def free_slots(capacity: wire.Slots, sessions: list[Session]) -> wire.Slots:
    used = wire.Slots()
    for s in sessions:
        used = used + wire.Slots.from_wire(occupying(s))
    return capacity - used


# --- lists and lookups for the GraphQL API -----------------------------------------------------

# fields a list `filter` may name, and those an `order` may name (controlplane/listing.py)
FILTER_COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "name": Session.name,
    "status": Session.status,
    "type": Session.type,
    "image": Session.image,
    "access_key": Session.access_key,
    "result": Session.result,
    "tag": Session.tag,
    "domain_name": Session.domain_name,
}
ORDER_COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "created_at": Session.created_at,
    "name": Session.name,
    "status": Session.status,
    "status_changed": Session.status_changed,
    "terminated_at": Session.terminated_at,
}


async def list_page(
    db: DBSession,
    *,
    access_key: str | None,
    statuses: Sequence[str] | None = None,
    domain_name: str | None = None,
    project_id: uuid.UUID | None = None,
    conditions: Sequence[listing.Condition] = (),
    orderings: Sequence[listing.Ordering] = (),
    limit: int,
    offset: int,
) -> tuple[list[Session], int]:
    """One page of sessions (newest first by default) and how many match in all.

    `access_key` None means every owner's (admins only: the caller checks).
    """
    clauses = listing.where(conditions, FILTER_COLUMNS)
    if access_key is not None:
        clauses.append(Session.access_key == access_key)
    if statuses is not None:
        clauses.append(Session.status.in_(statuses))
    if domain_name is not None:
        clauses.append(Session.domain_name == domain_name)
    if project_id is not None:
        clauses.append(Session.project_id == project_id)
    total = await db.scalar(select(func.count()).select_from(Session).where(*clauses))
    order = listing.order_by(orderings, ORDER_COLUMNS) or [Session.created_at.desc()]
    page = await db.scalars(
        select(Session).where(*clauses).order_by(*order, Session.id).limit(limit).offset(offset)
    )
    return list(page), int(total or 0)


async def get_visible(db: DBSession, requester: Keypair, session_id: uuid.UUID) -> Session | None:
    """The session with this id if the requester owns it or is an admin."""
    session = await db.get(Session, session_id)
    if session is None or not tenancy.can_see_owner(
        requester, session.domain_name, session.access_key
    ):
        return None
    return session


async def count_active(db: DBSession, access_keys: Collection[str]) -> dict[str, int]:
    """How many active sessions each of these keypairs has."""
    rows = await db.execute(
        select(Session.access_key, func.count())
        .where(Session.access_key.in_(access_keys), Session.status.in_(ACTIVE_STATUSES))
        .group_by(Session.access_key)
    )
    return {key: int(count) for key, count in rows}


async def occupied_by_node(db: DBSession) -> dict[str, wire.Slots]:
    """The slots sessions hold on each node."""
    used: dict[str, wire.Slots] = {}
    for s in await db.scalars(select(Session).where(Session.status.in_(OCCUPYING_STATUSES))):
        if s.node_id is not None:
            used[s.node_id] = used.get(s.node_id, wire.Slots()) + wire.Slots.from_wire(occupying(s))
    return used
