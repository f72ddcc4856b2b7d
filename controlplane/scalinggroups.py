"""Scaling groups (node pools) and who may use them: a project may use the groups bound to it
or to its domain (Backend.AI's rule, docs/backendai-api.md §13.2). A superadmin makes pools and
binds them (GraphQL `create_scaling_group`, `associate_scaling_group_with_domain|user_group`)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import (
    DEFAULT_SCALING_GROUP,
    Project,
    ScalingGroup,
    ScalingGroupDomain,
    ScalingGroupProject,
)
from controlplane.errors import InvalidAPIParams, ScalingGroupNotFound
from controlplane.tenancy import NAME_PATTERN

SCHEDULERS = ("fifo", "lifo", "drf")
SELECTIONS = ("dispersed", "concentrated")


async def allowed_for(db: DBSession, project: Project) -> list[ScalingGroup]:
    """The active scaling groups the project may use, `default` first, then by name."""
    bound = or_(
        ScalingGroup.name.in_(
            select(ScalingGroupDomain.scaling_group).where(
                ScalingGroupDomain.domain_name == project.domain_name
            )
        ),
        ScalingGroup.name.in_(
            select(ScalingGroupProject.scaling_group).where(
                ScalingGroupProject.project_id == project.id
            )
        ),
    )
    groups = await db.scalars(select(ScalingGroup).where(bound, ScalingGroup.is_active.is_(True)))
    return sorted(groups, key=lambda g: (g.name != DEFAULT_SCALING_GROUP, g.name))


def choose(
    allowed: list[ScalingGroup], project: Project, requested: str | None, session_type: str
) -> str:
    """The scaling group a new session of `project` goes to, of those it may use (`allowed_for`):
    the one it asked for if the project may use it, else the first that takes this type of
    session."""
    if requested is not None:
        if any(g.name == requested for g in allowed):
            return requested
        raise ScalingGroupNotFound(
            f"The scaling group {requested!r} does not exist or you do not have access to the"
            f" scaling group {requested!r}."
        )
    for group in allowed:
        types = group.scheduler_opts.get("allowed_session_types")
        if types is None or session_type.lower() in types:
            return group.name
    raise ScalingGroupNotFound(
        f"the project {project.name!r} may use no scaling group that takes"
        f" {session_type.lower()} sessions; ask an admin to bind one to it or to its domain"
    )


def usable_in_domain(domain_name: str) -> ColumnElement[bool]:
    """Scaling groups bound to the domain or to one of its projects: all a domain admin may
    see (nodes of other pools, and their names, are other domains' business)."""
    return or_(
        ScalingGroup.name.in_(
            select(ScalingGroupDomain.scaling_group).where(
                ScalingGroupDomain.domain_name == domain_name
            )
        ),
        ScalingGroup.name.in_(
            select(ScalingGroupProject.scaling_group)
            .join(Project, Project.id == ScalingGroupProject.project_id)
            .where(Project.domain_name == domain_name)
        ),
    )


async def create(
    db: DBSession,
    name: str,
    *,
    description: str = "",
    is_active: bool = True,
    is_public: bool = True,
    scheduler: str = "fifo",
    scheduler_opts: dict[str, Any] | None = None,
) -> ScalingGroup:
    """A new pool, bound to nothing yet (flushed). InvalidAPIParams says what is wrong."""
    if not re.match(NAME_PATTERN, name):
        raise InvalidAPIParams(f"scaling group name {name!r}: 1-64 letters, digits, '.', '_', '-'")
    if scheduler not in SCHEDULERS:
        raise InvalidAPIParams(f"scheduler {scheduler!r}: one of {', '.join(SCHEDULERS)}")
    opts = dict(scheduler_opts or {})
    selection = opts.get("agent_selection_strategy", SELECTIONS[0])
    if selection not in SELECTIONS:
        raise InvalidAPIParams(
            f"agent_selection_strategy {selection!r}: one of {', '.join(SELECTIONS)}"
        )
    if await db.get(ScalingGroup, name) is not None:
        raise InvalidAPIParams(f"a scaling group named {name!r} already exists")
    group = ScalingGroup(
        name=name,
        description=description,
        is_active=is_active,
        is_public=is_public,
        scheduler=scheduler,
        scheduler_opts=opts,
    )
    db.add(group)
    await db.flush()
    return group


async def get(db: DBSession, name: str) -> ScalingGroup:
    group = await db.get(ScalingGroup, name)
    if group is None:
        raise ScalingGroupNotFound(f"no scaling group named {name!r}")
    return group


async def bind_domain(db: DBSession, group: ScalingGroup, domain_name: str) -> None:
    """Let every project of the domain use the pool (idempotent)."""
    if await db.get(ScalingGroupDomain, (group.name, domain_name)) is None:
        db.add(ScalingGroupDomain(scaling_group=group.name, domain_name=domain_name))
        await db.flush()


async def bind_project(db: DBSession, group: ScalingGroup, project: Project) -> None:
    """Let the project use the pool (idempotent)."""
    if await db.get(ScalingGroupProject, (group.name, project.id)) is None:
        db.add(ScalingGroupProject(scaling_group=group.name, project_id=project.id))
        await db.flush()
