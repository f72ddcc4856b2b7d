"""Resource policies: the limits a keypair is under, from its own policy, its user's and its
project's; the strictest applies.

Counted limits (concurrent sessions, total slots, vfolder count) are counted per level: a
keypair's policy counts that keypair's sessions, a user's policy all of the user's, a project's
all of the project's; the scheduler checks each level (`Bound`). Per-session limits (lifetime,
idle timeout, vfolder size, allowed scaling groups and images) merge into one value, the
strictest, which `EffectivePolicy` gives together with the policy it came from, so that a
refusal or an idle end can name it. 0 means "no limit" for every count and duration.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

import wire
from controlplane.db.models import Keypair, Project, ResourcePolicy, User
from controlplane.sessions import KNOWN_SLOTS as SLOT_NAMES
from controlplane.sessions import PLUGIN_SLOT

Level = Literal["keypair", "user", "project"]
LEVELS: tuple[Level, ...] = ("keypair", "user", "project")


@dataclass(frozen=True)
class Limits:
    """One policy's values, detached from the database."""

    name: str
    total_slots: wire.Slots
    limited_unspecified: bool  # slots missing from total_slots: none allowed (else unlimited)
    max_concurrent_sessions: int
    max_session_lifetime: int
    idle_timeout: int
    utilization_window: int
    min_cpu_util_pct: int
    min_gpu_util_pct: int
    max_containers_per_session: int
    max_vfolder_count: int
    max_vfolder_size: int
    allowed_scaling_groups: frozenset[str] | None
    allowed_images: frozenset[str] | None

    @classmethod
    def of(cls, row: ResourcePolicy) -> Limits:
        return cls(
            name=row.name,
            total_slots=wire.Slots.from_wire(row.total_resource_slots),
            limited_unspecified=row.default_for_unspecified == "LIMITED",
            max_concurrent_sessions=row.max_concurrent_sessions,
            max_session_lifetime=row.max_session_lifetime,
            idle_timeout=row.idle_timeout,
            utilization_window=row.utilization_window,
            min_cpu_util_pct=row.min_cpu_util_pct,
            min_gpu_util_pct=row.min_gpu_util_pct,
            max_containers_per_session=row.max_containers_per_session,
            max_vfolder_count=row.max_vfolder_count,
            max_vfolder_size=row.max_vfolder_size,
            allowed_scaling_groups=_names(row.allowed_scaling_groups),
            allowed_images=_names(row.allowed_images),
        )

    @property
    def counts(self) -> bool:
        """Whether it limits what is held at once (sessions or slots) at all."""
        return bool(self.max_concurrent_sessions or self.total_slots or self.limited_unspecified)

    def slot_limit(self, slot: str) -> Decimal | None:
        """How much of `slot` may be held at once; None: no limit."""
        if slot in self.total_slots:
            return self.total_slots[slot]
        return Decimal(0) if self.limited_unspecified else None


@dataclass(frozen=True)
class Usage:
    """What a keypair, a user or a project holds now: sessions and their slots."""

    sessions: int = 0
    slots: wire.Slots = field(default_factory=wire.Slots)

    def plus(self, slots: wire.Slots, sign: int = 1) -> Usage:
        return Usage(self.sessions + sign, self.slots + slots if sign > 0 else self.slots - slots)


@dataclass(frozen=True)
class Bound:
    """A policy at one level."""

    level: Level
    limits: Limits

    @property
    def label(self) -> str:
        return f"{self.level} resource policy '{self.limits.name}'"

    def refuses(self, request: wire.Slots, used: Usage) -> str | None:
        """Why one more session asking for `request` would break this policy, or None."""
        cap = self.limits.max_concurrent_sessions
        if cap and used.sessions + 1 > cap:
            plural = "session" if cap == 1 else "sessions"
            return f"{self.label}: at most {cap} concurrent {plural}"
        for slot, quantity in sorted(request.items()):
            limit = self.limits.slot_limit(slot)
            if quantity > 0 and limit is not None and used.slots[slot] + quantity > limit:
                held = wire.Slots({slot: used.slots[slot]}).describe()
                allowed = wire.Slots({slot: limit}).describe()
                return f"{self.label}: at most {allowed} in all ({held} in use)"
        return None


@dataclass(frozen=True)
class EffectivePolicy:
    bounds: tuple[Bound, ...]  # keypair, user, then project (when known)

    def strictest(self, field: str) -> tuple[int, Bound | None]:
        """The smallest non-zero value of an integer limit and whose it is; (0, None): none."""
        best: tuple[int, Bound | None] = (0, None)
        for bound in self.bounds:
            value = int(getattr(bound.limits, field))
            if value > 0 and (best[1] is None or value < best[0]):
                best = (value, bound)
        return best

    @property
    def idle_timeout(self) -> int:
        return self.strictest("idle_timeout")[0]

    @property
    def max_session_lifetime(self) -> int:
        return self.strictest("max_session_lifetime")[0]

    @property
    def utilization(self) -> tuple[int, int, int]:
        """The utilization check (window s, min cpu %, min GPU %): the shortest window of the
        levels that set one, with the highest thresholds among those levels; (0, 0, 0): off."""
        checking = [b.limits for b in self.bounds if b.limits.utilization_window > 0]
        if not checking:
            return (0, 0, 0)
        return (
            min(limits.utilization_window for limits in checking),
            max(limits.min_cpu_util_pct for limits in checking),
            max(limits.min_gpu_util_pct for limits in checking),
        )

    @property
    def max_vfolder_count(self) -> int:
        return self.strictest("max_vfolder_count")[0]

    @property
    def max_vfolder_size(self) -> int:
        return self.strictest("max_vfolder_size")[0]

    def refuses_scaling_group(self, name: str) -> str | None:
        for bound in self.bounds:
            allowed = bound.limits.allowed_scaling_groups
            if allowed is not None and name not in allowed:
                return f"{bound.label} does not allow the scaling group {name!r}"
        return None

    def refuses_image(self, image: str) -> str | None:
        for bound in self.bounds:
            allowed = bound.limits.allowed_images
            if allowed is not None and image not in allowed:
                return f"{bound.label} does not allow the image {image!r}"
        return None


async def load_all(db: DBSession) -> dict[str, Limits]:
    return {row.name: Limits.of(row) for row in await db.scalars(select(ResourcePolicy))}


async def effective_policy(
    db: DBSession, keypair: Keypair, project_id: uuid.UUID | None = None
) -> EffectivePolicy:
    """The policies `keypair` is under: its own, its user's and, given one, the project's."""
    names: list[tuple[Level, str]] = [("keypair", keypair.resource_policy)]
    user = await db.get(User, keypair.user_id)
    assert user is not None, "a keypair's user is never deleted before it"
    names.append(("user", user.resource_policy))
    if project_id is not None:
        project = await db.get(Project, project_id)
        if project is not None:
            names.append(("project", project.resource_policy))
    rows = await db.scalars(
        select(ResourcePolicy).where(ResourcePolicy.name.in_({n for _, n in names}))
    )
    limits = {row.name: Limits.of(row) for row in rows}
    return EffectivePolicy(tuple(Bound(level, limits[name]) for level, name in names))


def effective_from(
    policies: Mapping[str, Limits], names: Iterable[tuple[Level, str]]
) -> EffectivePolicy:
    """The same as `effective_policy`, from policies already loaded (the scheduler's way)."""
    return EffectivePolicy(tuple(Bound(level, policies[name]) for level, name in names))


def _names(value: list[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


# --- what admins change (GraphQL create/modify/delete_keypair_resource_policy, the CLI, the web
# UI's policies page) ------------------------------------------------------------------------

INT_FIELDS = (
    "max_concurrent_sessions",
    "max_session_lifetime",
    "idle_timeout",
    "utilization_window",
    "min_cpu_util_pct",
    "min_gpu_util_pct",
    "max_containers_per_session",
    "max_vfolder_count",
    "max_vfolder_size",
)
PERCENT_FIELDS = ("min_cpu_util_pct", "min_gpu_util_pct")


class PolicyError(ValueError):
    """A policy change that cannot be made; the message says what to fix."""


def apply_props(row: ResourcePolicy, props: Mapping[str, object]) -> None:
    """Set the given fields on `row`, each checked; fields not given stay as they are.
    `total_resource_slots` and `allowed_vfolder_hosts` may be JSON strings (Backend.AI's
    client sends them so)."""
    for field_name in INT_FIELDS:
        value = props.get(field_name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PolicyError(f"{field_name} must be a whole number, 0 or more (0: no limit)")
        if field_name in PERCENT_FIELDS and value > 100:
            raise PolicyError(f"{field_name} is a percentage: 0 to 100")
        setattr(row, field_name, value)
    unspecified = props.get("default_for_unspecified")
    if unspecified is not None:
        if unspecified not in ("UNLIMITED", "LIMITED"):
            raise PolicyError("default_for_unspecified must be UNLIMITED or LIMITED")
        row.default_for_unspecified = str(unspecified)
    if props.get("total_resource_slots") is not None:
        slots = _json_object(props["total_resource_slots"], "total_resource_slots")
        unknown = [k for k in slots if k not in SLOT_NAMES and not PLUGIN_SLOT.match(k)]
        if unknown:
            raise PolicyError(f"total_resource_slots: unknown slot(s) {', '.join(unknown)}")
        try:
            row.total_resource_slots = wire.Slots(slots).to_wire()
        except wire.SlotsError as exc:
            raise PolicyError(f"total_resource_slots: {exc}") from exc
    if props.get("allowed_vfolder_hosts") is not None:
        row.allowed_vfolder_hosts = _json_object(
            props["allowed_vfolder_hosts"], "allowed_vfolder_hosts"
        )
    for field_name in ("allowed_scaling_groups", "allowed_images"):
        if field_name in props:  # null lifts the restriction
            value = props[field_name]
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise PolicyError(f"{field_name} must be a list of names, or null for any")
            setattr(row, field_name, value)


async def create(db: DBSession, name: str, props: Mapping[str, object]) -> ResourcePolicy:
    """A new policy with the given fields checked (the others at their defaults: no limit)."""
    if not 1 <= len(name) <= 64:
        raise PolicyError("a policy name has 1 to 64 characters")
    if await db.get(ResourcePolicy, name) is not None:
        raise PolicyError(f"a resource policy named {name!r} already exists")
    row = ResourcePolicy(name=name)
    apply_props(row, props)
    db.add(row)
    await db.flush()
    return row


async def modify(db: DBSession, name: str, props: Mapping[str, object]) -> ResourcePolicy:
    """Change the given fields of an existing policy (the caller wakes the scheduler: a looser
    policy may let waiting sessions start)."""
    row = await db.get(ResourcePolicy, name)
    if row is None:
        raise PolicyError(f"no resource policy named {name!r}")
    apply_props(row, props)
    await db.flush()
    return row


async def in_use(db: DBSession, name: str) -> str | None:
    """What still uses the policy (a keypair, user or project), or None."""
    for model, what in ((Keypair, "keypair"), (User, "user"), (Project, "project")):
        if await db.scalar(select(model).where(model.resource_policy == name).limit(1)):
            return what
    return None


def _json_object(value: object, field_name: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise PolicyError(f"{field_name} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PolicyError(f"{field_name} must be a JSON object")
    return value
