"""GET /scaling-groups?group=PROJECT: the node pools a project may use, as `backend.ai admin
scaling-group get-available` asks (docs/backendai-api.md §13.2). The project is one the caller
may create sessions in (a member's, or a managed domain's for admins); any other, like one that
does not exist, is "Invalid group", so its pools' names stay unknown."""

from __future__ import annotations

import uuid

from pydantic import Field
from quart import Blueprint
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import scalinggroups, tenancy
from controlplane.api._context import core, requester
from controlplane.api._typed import Query, Reply, query, returns
from controlplane.db.models import Keypair, Project
from controlplane.errors import InvalidAPIParams

bp = Blueprint("scaling_groups", __name__)


class AvailableQuery(Query):
    group: str = Field(min_length=1, max_length=64, description="A project, by name or id.")


class PoolName(Reply):
    name: str


class Available(Reply):
    scaling_groups: list[PoolName] = Field(alias="scaling_groups")


@bp.get("/scaling-groups")
@returns(Available)
@query(AvailableQuery)
async def available(args: AvailableQuery) -> Available:
    """The scaling groups sessions of the project may use (non-admins: public ones)."""
    me = requester()
    async with core().db() as db:
        project = await _project(db, me, args.group)
        groups = await scalinggroups.allowed_for(db, project)
    return Available(
        scaling_groups=[PoolName(name=g.name) for g in groups if g.is_public or me.is_admin]
    )


async def _project(db: DBSession, me: Keypair, ref: str) -> Project:
    try:
        project_id = uuid.UUID(ref)
    except ValueError:
        return await tenancy.resolve_project(db, me.user, None, ref)
    project = await db.get(Project, project_id)
    if project is not None:
        if me.user.role == "user":
            allowed = await tenancy.is_member(db, me.user, project)
        else:
            allowed = tenancy.managed_domain(me) in (None, project.domain_name)
        if allowed:
            return project
    raise InvalidAPIParams("Invalid group")
