"""Sessions as data: request parsing and validation, lookup by reference, state transitions.

Transitions are compare-and-set updates (`expect` the statuses you think it is in), so a destroy
racing a kernel start cannot be overwritten; every transition writes a history row.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession as DBSession
from sqlalchemy.orm import QueryableAttribute

import wire
from controlplane import listing
from controlplane.db.models import (
    ACTIVE_STATUSES,
    DEAD_STATUSES,
    OCCUPYING_STATUSES,
    Keypair,
    Node,
    Session,
    StatusChange,
)
from controlplane.db.types import utcnow
from controlplane.errors import (
    InvalidAPIParams,
    SessionNotFound,
    UnsatisfiableResources,
)
from controlplane.events import SessionEvent

NAME_RULE = re.compile(r"^(?=.{4,64}$)\w[\w.-]*\w$", re.ASCII)
KNOWN_SLOTS = ("cpu", "mem")
DEFAULT_RESOURCES = {"cpu": "1", "mem": "1g"}
MIN_MEM = 64 * 2**20


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


def _pick(body: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in body and body[name] is not None:
            return body[name]
    return default


def parse_create(body: Any) -> CreateParams:
    """Read a POST /session body (Backend.AI's keys and their aliases); unknown keys are ignored."""
    if not isinstance(body, dict):
        raise InvalidAPIParams("the request body must be a JSON object")
    problems: dict[str, str] = {}
    config = _pick(body, "config", default={})
    if not isinstance(config, dict):
        problems["config"] = "must be an object"
        config = {}

    name = _pick(body, "name", "session_name", "clientSessionToken")
    if name is None:
        name = f"session-{secrets.token_hex(5)}"
    if not isinstance(name, str) or not NAME_RULE.match(name):
        problems["name"] = (
            "4-64 ASCII letters, digits, '_', '-' or '.', starting and ending with a letter,"
            " digit or '_'"
        )
    image = _pick(body, "image", "lang")
    if not isinstance(image, str) or not image.strip():
        problems["image"] = "required: an image name or alias, e.g. python"
    session_type = str(_pick(body, "type", "sessionType", default="interactive")).upper()
    if session_type not in ("INTERACTIVE", "BATCH"):
        problems["type"] = "must be interactive or batch"
    startup = _pick(body, "startupCommand", "startup_command")
    if startup is not None and not isinstance(startup, str):
        problems["startupCommand"] = "must be a string"
    if session_type == "BATCH" and not startup:
        problems["startupCommand"] = "a batch session needs a startup command"

    resources = wire.Slots(DEFAULT_RESOURCES)
    raw_resources = _pick(config, "resources", default={})
    if not isinstance(raw_resources, dict):
        problems["config.resources"] = "must be an object like {'cpu': '1', 'mem': '512m'}"
    else:
        unknown = sorted(set(raw_resources) - set(KNOWN_SLOTS))
        if unknown:
            problems["config.resources"] = (
                f"unknown resource slot(s) {', '.join(unknown)}; known: {', '.join(KNOWN_SLOTS)}"
            )
        else:
            try:
                resources = wire.Slots({**DEFAULT_RESOURCES, **raw_resources})
            except wire.SlotsError as exc:
                problems["config.resources"] = str(exc)
            else:
                if resources["cpu"] <= 0:
                    problems["config.resources"] = "cpu must be more than 0"
                elif resources["mem"] < MIN_MEM:
                    problems["config.resources"] = "mem must be at least 64m"

    environ = _pick(config, "environ", default={})
    if not isinstance(environ, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in environ.items()
    ):
        problems["config.environ"] = "must be an object of string values"
        environ = {}
    # refused rather than ignored, until Shipyard has them (docs/backendai-client.md)
    if _pick(config, "mounts", default=[]) or _pick(config, "mount_map", "mountMap", default={}):
        problems["config.mounts"] = "virtual folders are not supported yet: leave out the mounts"
    if _pick(config, "preopen_ports", "preopenPorts", default=[]):
        problems["config.preopen_ports"] = "app ports are not supported yet"
    max_wait = _pick(body, "maxWaitSeconds", "max_wait_seconds", default=0)
    if not isinstance(max_wait, int | float) or max_wait < 0:
        problems["maxWaitSeconds"] = "must be a number of seconds >= 0"
        max_wait = 0
    tag = _pick(body, "tag")
    owner = _pick(body, "owner_access_key", "ownerAccessKey")
    if problems:
        raise InvalidAPIParams("Input validation error", data=problems)
    return CreateParams(
        name=name,
        image=image.strip(),
        type=session_type,
        resources=resources,
        environ=environ,
        startup_command=startup,
        enqueue_only=bool(_pick(body, "enqueueOnly", "enqueue_only", default=False)),
        max_wait=float(max_wait),
        reuse=bool(_pick(body, "reuseIfExists", "reuse_if_exists", default=True)),
        tag=str(tag) if tag is not None else None,
        owner_access_key=owner if isinstance(owner, str) and owner else None,
    )


async def check_satisfiable(db: DBSession, resources: wire.Slots) -> None:
    """Refuse what no known node could ever host; with no node known yet, the session waits."""
    nodes = list(await db.scalars(select(Node)))
    if not nodes:
        return
    if any(resources.fits_in(wire.Slots.from_wire(n.available_slots)) for n in nodes):
        return
    largest = max(nodes, key=lambda n: wire.Slots.from_wire(n.available_slots)["mem"])
    capacity = wire.Slots.from_wire(largest.available_slots)
    raise UnsatisfiableResources(
        f"no node can ever provide {resources.describe()}; the largest node, {largest.id},"
        f" has {capacity.describe()} in all",
        data={"requested": resources.to_wire(), "largest_node": capacity.to_wire()},
    )


async def find(
    db: DBSession, owner: Keypair, ref: str, *, owner_access_key: str | None = None
) -> Session:
    """The owner's session by UUID or name (the active one first, else the newest)."""
    access_key = owner.access_key
    if owner_access_key and owner_access_key != owner.access_key:
        if not owner.is_admin:
            raise SessionNotFound(f"Session (id={ref}) does not exist.")
        access_key = owner_access_key
    query = select(Session).where(Session.access_key == access_key)
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
        select(Session).where(
            Session.access_key == access_key,
            Session.name == name,
            Session.status.in_(ACTIVE_STATUSES),
        )
    )


async def list_for(db: DBSession, owner: Keypair, *, include_dead: bool) -> list[Session]:
    query = select(Session).where(Session.access_key == owner.access_key)
    if not include_dead:
        query = query.where(Session.status.in_(ACTIVE_STATUSES))
    return list(await db.scalars(query.order_by(Session.created_at)))


async def transition(
    db: DBSession,
    session: Session,
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


def occupying(session: Session) -> dict[str, str]:
    if session.status in ("SCHEDULED", "PREPARING", "RUNNING", "TERMINATING"):
        return dict(session.requested_slots)
    return {}


def to_rest(session: Session) -> dict[str, Any]:
    """GET /session/<ref>: Backend.AI's camelCase keys plus Shipyard's status history."""
    main = session.kernels[0] if session.kernels else None
    exit_code = session.status_data.get("exit_code") if session.status_data else None
    age = (utcnow() - session.created_at).total_seconds() * 1000
    return {
        "sessionId": str(session.id),
        "sessionName": session.name,
        "domainName": session.domain_name,
        "groupId": str(session.project_id),
        "userId": str(session.user_id),
        "accessKey": session.access_key,
        "type": session.type,
        "lang": session.image,
        "image": session.image,
        "architecture": "x86_64",
        "tag": session.tag,
        "node": session.node_id,
        "containerId": main.container_id if main else None,
        "status": session.status,
        "statusInfo": session.status_info,
        "statusData": session.status_data,
        "statusChanged": session.status_changed.isoformat(),
        "result": session.result,
        "exitCode": exit_code,
        "requestedSlots": session.requested_slots,
        "occupiedSlots": occupying(session),
        "occupyingSlots": occupying(session),
        "environ": session.environ,
        "creationTime": session.created_at.isoformat(),
        "terminationTime": session.terminated_at.isoformat() if session.terminated_at else None,
        "age": int(age),
        "statusHistory": [
            {"status": h.status, "reason": h.reason, "at": h.at.isoformat()}
            for h in session.history
        ],
    }


def to_rest_brief(session: Session) -> dict[str, Any]:
    return {
        "sessionId": str(session.id),
        "sessionName": session.name,
        "status": session.status,
        "statusInfo": session.status_info,
        "image": session.image,
        "type": session.type,
        "creationTime": session.created_at.isoformat(),
    }


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
    if session is None or not (requester.is_admin or session.access_key == requester.access_key):
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
