"""Domains, projects (Backend.AI's groups) and who is in them, who manages what, and the
scheduling and resource policies every keypair is under, as far as Shipyard has them.

Roles: a `superadmin` manages every domain; an `admin` manages its own domain (its users,
projects, keypairs and their sessions); a `user` sees its own sessions and keypairs and the
projects it is a member of. Admin rights on the REST API also need an admin keypair
(`is_admin`), as in Backend.AI; `managed_domain` is what scopes them.

Every user is a member of its domain's `default` project (made with the domain); admins add
users to other projects. Every node starts in the scaling group `default`, bound to every
domain (controlplane/scalinggroups.py has the others). Every keypair starts under the resource
policy `default`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import (
    DEFAULT_SCALING_GROUP,
    Domain,
    Keypair,
    Project,
    ProjectMember,
    ScalingGroupDomain,
    User,
)
from controlplane.errors import InsufficientPrivilege, InvalidAPIParams, ObjectNotFound

DEFAULT_DOMAIN = "default"
DEFAULT_PROJECT = "default"
SCALING_GROUP = "default"
RESOURCE_POLICY = "default"
ROLES = ("superadmin", "admin", "user")
NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$"


def managed_domain(keypair: Keypair) -> str | None:
    """The domain an admin keypair manages; None: every domain (a superadmin's)."""
    return None if keypair.user.role == "superadmin" else keypair.user.domain_name


def require_manager(keypair: Keypair, domain_name: str) -> None:
    """InsufficientPrivilege unless this admin keypair manages `domain_name`."""
    if not keypair.is_admin:
        raise InsufficientPrivilege("this needs an admin keypair")
    if managed_domain(keypair) not in (None, domain_name):
        raise InsufficientPrivilege(f"you manage the domain {keypair.user.domain_name!r} only")


def can_see_owner(requester: Keypair, owner_domain: str, owner_access_key: str) -> bool:
    """Whether `requester` may see an object owned by another keypair in `owner_domain`."""
    if owner_access_key == requester.access_key:
        return True
    return requester.is_admin and managed_domain(requester) in (None, owner_domain)


def _check_name(what: str, name: str) -> str:
    if not re.match(NAME_PATTERN, name):
        raise InvalidAPIParams(
            f"{what} name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a"
            " letter or digit"
        )
    return name


async def list_domains(db: DBSession, *, name: str | None = None) -> list[Domain]:
    query = select(Domain).order_by(Domain.name)
    if name is not None:
        query = query.where(Domain.name == name)
    return list(await db.scalars(query))


async def get_domain(db: DBSession, name: str) -> Domain | None:
    return await db.get(Domain, name)


async def create_domain(db: DBSession, name: str) -> Domain:
    """A new domain with its `default` project."""
    if await db.get(Domain, _check_name("domain", name)) is not None:
        raise InvalidAPIParams(f"the domain {name!r} already exists")
    domain = Domain(name=name)
    db.add(domain)
    await db.flush()
    db.add(Project(name=DEFAULT_PROJECT, domain_name=name))
    # the default scaling group (migration 0006 makes it) serves every new domain until an
    # admin binds others
    db.add(ScalingGroupDomain(scaling_group=DEFAULT_SCALING_GROUP, domain_name=name))
    await db.flush()
    return domain


async def bootstrapped_at(db: DBSession) -> datetime:
    """When the default domain, and with it the default scaling group and policy, was made."""
    domain = await db.get(Domain, DEFAULT_DOMAIN)
    assert domain is not None, "keypairs.bootstrap() creates the default domain"
    return domain.created_at


async def list_projects(
    db: DBSession,
    *,
    domain_name: str | None = None,
    name: str | None = None,
    project_id: uuid.UUID | None = None,
    member: uuid.UUID | None = None,
) -> list[Project]:
    """Projects (of a domain, by name or id, of which the user `member` is a member)."""
    query = select(Project).order_by(Project.domain_name, Project.name)
    if domain_name is not None:
        query = query.where(Project.domain_name == domain_name)
    if name is not None:
        query = query.where(Project.name == name)
    if project_id is not None:
        query = query.where(Project.id == project_id)
    if member is not None:
        query = query.where(
            Project.id.in_(select(ProjectMember.project_id).where(ProjectMember.user_id == member))
        )
    return list(await db.scalars(query))


async def create_project(db: DBSession, domain_name: str, name: str) -> Project:
    if await db.get(Domain, domain_name) is None:
        raise ObjectNotFound(f"there is no domain {domain_name!r}")
    if await list_projects(db, domain_name=domain_name, name=_check_name("project", name)):
        raise InvalidAPIParams(f"the domain {domain_name!r} already has a project {name!r}")
    project = Project(name=name, domain_name=domain_name)
    db.add(project)
    await db.flush()
    return project


async def find_project(db: DBSession, domain_name: str, name: str) -> Project:
    found = await list_projects(db, domain_name=domain_name, name=name)
    if not found:
        raise ObjectNotFound(f"the domain {domain_name!r} has no project {name!r}")
    return found[0]


async def set_member(db: DBSession, project: Project, user: User, *, member: bool) -> None:
    """Add the user to the project (or remove it); both must be in the same domain."""
    if user.domain_name != project.domain_name:
        raise InvalidAPIParams(
            f"{user.email} is in the domain {user.domain_name!r}, the project in"
            f" {project.domain_name!r}"
        )
    existing = await db.get(ProjectMember, (project.id, user.id))
    if member and existing is None:
        db.add(ProjectMember(project_id=project.id, user_id=user.id))
    elif not member and existing is not None:
        await db.delete(existing)
    await db.flush()


async def is_member(db: DBSession, user: User, project: Project) -> bool:
    found = await db.scalar(
        select(ProjectMember.user_id).where(
            ProjectMember.user_id == user.id, ProjectMember.project_id == project.id
        )
    )
    return found is not None


async def memberships(
    db: DBSession, user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[Project]]:
    """The projects each of these users is a member of."""
    rows = await db.execute(
        select(ProjectMember.user_id, Project)
        .join(Project, Project.id == ProjectMember.project_id)
        .where(ProjectMember.user_id.in_(user_ids))
        .order_by(Project.name)
    )
    found: dict[uuid.UUID, list[Project]] = {u: [] for u in user_ids}
    for user_id, project in rows:
        found[user_id].append(project)
    return found


async def resolve_project(
    db: DBSession, owner: User, domain_name: str | None, project_name: str | None
) -> Project:
    """The project a new session of `owner` goes in (docs/backendai-api.md §13.2): by name, in
    the owner's domain; a user only into projects it is a member of."""
    domain_name = domain_name or owner.domain_name
    if domain_name != owner.domain_name and owner.role != "superadmin":
        raise InvalidAPIParams("You can only set the domain to your domain.")
    member = owner.id if owner.role == "user" else None
    found = await list_projects(
        db, domain_name=domain_name, name=project_name or DEFAULT_PROJECT, member=member
    )
    if not found:
        raise InvalidAPIParams("Invalid group")
    return found[0]


async def list_users(
    db: DBSession,
    *,
    domain_name: str | None = None,
    project_id: uuid.UUID | None = None,
    statuses: Collection[str] | None = None,
) -> list[User]:
    """Users (of a domain, members of a project, in these statuses), oldest first."""
    query = select(User).order_by(User.created_at, User.id)
    if domain_name is not None:
        query = query.where(User.domain_name == domain_name)
    if project_id is not None:
        query = query.where(
            User.id.in_(select(ProjectMember.user_id).where(ProjectMember.project_id == project_id))
        )
    if statuses is not None:
        query = query.where(User.status.in_(statuses))
    return list(await db.scalars(query))


async def list_keypairs(
    db: DBSession,
    *,
    user_id: uuid.UUID | None = None,
    domain_name: str | None = None,
    is_active: bool | None = None,
) -> list[Keypair]:
    """Keypairs (of one user, of one domain's users), oldest first."""
    query = select(Keypair).order_by(Keypair.created_at, Keypair.access_key)
    if user_id is not None:
        query = query.where(Keypair.user_id == user_id)
    if domain_name is not None:
        query = query.where(
            Keypair.user_id.in_(select(User.id).where(User.domain_name == domain_name))
        )
    if is_active is not None:
        query = query.where(Keypair.is_active.is_(is_active))
    return list(await db.scalars(query))
