"""Scaling groups (node pools) and who may use them: a project may use the groups bound to it
or to its domain (Backend.AI's rule, docs/backendai-api.md §13.2)."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import (
    DEFAULT_SCALING_GROUP,
    Project,
    ScalingGroup,
    ScalingGroupDomain,
    ScalingGroupProject,
)
from controlplane.errors import ScalingGroupNotFound

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


async def choose(db: DBSession, project: Project, requested: str | None, session_type: str) -> str:
    """The scaling group a new session of `project` goes to: the one it asked for if the
    project may use it, else the first allowed one that takes this type of session."""
    allowed = await allowed_for(db, project)
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
