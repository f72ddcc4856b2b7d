"""Domains, projects (Backend.AI's groups) and who is in them, and the scheduling and resource
policies every keypair is under, as far as Shipyard has them; also the whole lists of users
and keypairs (keypairs.py has the paginated ones).

Every user is a member of the default project of its domain (keypairs.bootstrap makes the one
domain and project, `default`; sessions are created in it). One scaling group, `default`, holds
every node, and the scheduler may place any session on any of them. One keypair resource
policy, `default`, is every keypair's, and it limits nothing beyond the nodes' capacity.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import Domain, Keypair, Project, User
from controlplane.keypairs import DEFAULT_DOMAIN, DEFAULT_PROJECT

SCALING_GROUP = "default"
RESOURCE_POLICY = "default"


async def list_domains(db: DBSession) -> list[Domain]:
    return list(await db.scalars(select(Domain).order_by(Domain.name)))


async def get_domain(db: DBSession, name: str) -> Domain | None:
    return await db.get(Domain, name)


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
) -> list[Project]:
    query = select(Project).order_by(Project.domain_name, Project.name)
    if domain_name is not None:
        query = query.where(Project.domain_name == domain_name)
    if name is not None:
        query = query.where(Project.name == name)
    if project_id is not None:
        query = query.where(Project.id == project_id)
    return list(await db.scalars(query))


def members_domain(project: Project) -> str | None:
    """The domain whose users are all members of this project; None: it has no members."""
    return project.domain_name if project.name == DEFAULT_PROJECT else None


def is_member(user: User, project: Project) -> bool:
    return members_domain(project) == user.domain_name


async def list_users(db: DBSession, *, domain_name: str | None = None) -> list[User]:
    """Every user (of one domain), oldest first."""
    query = select(User).order_by(User.created_at, User.id)
    if domain_name is not None:
        query = query.where(User.domain_name == domain_name)
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
