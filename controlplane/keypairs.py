"""Users and keypairs: bootstrap of the first admin, creation, listing, removal."""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession
from sqlalchemy.orm import QueryableAttribute

from controlplane import listing
from controlplane.db.models import (
    DEFAULT_SCALING_GROUP,
    Domain,
    Keypair,
    Project,
    ScalingGroupDomain,
    User,
)
from controlplane.errors import InvalidAPIParams, KeypairNotFound
from controlplane.secretbox import SecretBox, SecretBoxError

DEFAULT_DOMAIN = "default"
DEFAULT_PROJECT = "default"
ADMIN_EMAIL = "admin@shipyard.local"
_UPPER_DIGITS = string.ascii_uppercase + string.digits


def new_access_key() -> str:
    # Backend.AI's shape: 20 characters, "AKIA" + 16 upper-case letters and digits
    return "AKIA" + "".join(secrets.choice(_UPPER_DIGITS) for _ in range(16))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]


def _new_keypair(box: SecretBox, user: User, *, is_admin: bool) -> tuple[Keypair, str]:
    access_key, secret_key = new_access_key(), new_secret_key()
    sealed = box.seal(secret_key, bound_to=access_key)
    keypair = Keypair(access_key=access_key, sealed_secret_key=sealed, user=user, is_admin=is_admin)
    return keypair, secret_key


def secret_key(box: SecretBox, keypair: Keypair) -> str:
    """The keypair's secret key in clear (to check a signature, or to show it to its owner)."""
    return box.unseal(keypair.sealed_secret_key, bound_to=keypair.access_key)


async def check_secrets_key(db: DBSession, box: SecretBox) -> None:
    """SecretBoxError, at start, when the secrets key is not the one this database's keypairs
    were sealed with (say, a database restored without its key file)."""
    keypair = await db.scalar(select(Keypair).limit(1))
    if keypair is not None:
        try:
            secret_key(box, keypair)
        except SecretBoxError as exc:
            raise SecretBoxError(
                "the secrets key does not open this database's secret keys: restore the"
                " secrets_key_file that belongs to it"
            ) from exc


async def bootstrap(db: DBSession, box: SecretBox) -> tuple[Keypair, str] | None:
    """Create the default domain, project and the admin with a keypair, once.

    Returns the admin keypair and its secret key when it was created now, None when it already
    existed.
    """
    if await db.get(Domain, DEFAULT_DOMAIN) is None:
        db.add(Domain(name=DEFAULT_DOMAIN))
        db.add(Project(name=DEFAULT_PROJECT, domain_name=DEFAULT_DOMAIN))
        await db.flush()
        # the default scaling group (migration 0006 makes it) is the default domain's
        db.add(ScalingGroupDomain(scaling_group=DEFAULT_SCALING_GROUP, domain_name=DEFAULT_DOMAIN))
        await db.flush()
    admins = await db.scalar(
        select(func.count()).select_from(User).where(User.role == "superadmin")
    )
    if admins:
        return None
    admin = User(email=ADMIN_EMAIL, role="superadmin", domain_name=DEFAULT_DOMAIN)
    db.add(admin)
    await db.flush()
    keypair, secret = _new_keypair(box, admin, is_admin=True)
    db.add(keypair)
    await db.flush()
    return keypair, secret


async def default_project_id(db: DBSession) -> Project:
    project = await db.scalar(
        select(Project).where(
            Project.domain_name == DEFAULT_DOMAIN, Project.name == DEFAULT_PROJECT
        )
    )
    assert project is not None, "bootstrap() creates the default project"
    return project


async def get_active(db: DBSession, access_key: str) -> Keypair | None:
    return await db.scalar(
        select(Keypair).where(Keypair.access_key == access_key, Keypair.is_active.is_(True))
    )


async def create(
    db: DBSession, box: SecretBox, email: str, *, is_admin: bool = False
) -> tuple[Keypair, str]:
    """A new keypair for the user with this e-mail (the user is created when new), and its
    secret key: the database keeps it sealed."""
    email = email.strip()
    if "@" not in email or len(email) > 256 or any(c.isspace() for c in email):
        raise InvalidAPIParams(f"{email!r} is not an e-mail address")
    user = await db.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, role="admin" if is_admin else "user", domain_name=DEFAULT_DOMAIN)
        db.add(user)
        await db.flush()
    keypair, secret = _new_keypair(box, user, is_admin=is_admin)
    db.add(keypair)
    await db.flush()
    return keypair, secret


async def list_all(db: DBSession) -> list[Keypair]:
    return list(await db.scalars(select(Keypair).order_by(Keypair.created_at)))


async def delete(db: DBSession, access_key: str, *, requester: Keypair) -> None:
    """Deactivate a keypair (sessions keep their owner reference)."""
    if access_key == requester.access_key:
        raise InvalidAPIParams("you cannot remove the keypair this request is signed with")
    keypair = await get_active(db, access_key)
    if keypair is None:
        raise KeypairNotFound(f"Keypair {access_key} does not exist.")
    keypair.is_active = False
    await db.flush()


# --- lists and lookups for the GraphQL API -----------------------------------------------------

KEYPAIR_FILTER_COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "access_key": Keypair.access_key,
    "is_active": Keypair.is_active,
    "is_admin": Keypair.is_admin,
}
KEYPAIR_ORDER_COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "created_at": Keypair.created_at,
    "access_key": Keypair.access_key,
}
USER_FILTER_COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "email": User.email,
    "role": User.role,
    "domain_name": User.domain_name,
}
USER_ORDER_COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "created_at": User.created_at,
    "email": User.email,
    "role": User.role,
}


async def list_keypairs_page(
    db: DBSession,
    *,
    user_id: uuid.UUID | None = None,
    is_active: bool | None = None,
    domain_name: str | None = None,
    conditions: Sequence[listing.Condition] = (),
    orderings: Sequence[listing.Ordering] = (),
    limit: int,
    offset: int,
) -> tuple[list[Keypair], int]:
    """One page of keypairs (oldest first by default) and how many match in all."""
    clauses = listing.where(conditions, KEYPAIR_FILTER_COLUMNS)
    if user_id is not None:
        clauses.append(Keypair.user_id == user_id)
    if is_active is not None:
        clauses.append(Keypair.is_active.is_(is_active))
    if domain_name is not None:
        clauses.append(Keypair.user_id.in_(select(User.id).where(User.domain_name == domain_name)))
    total = await db.scalar(select(func.count()).select_from(Keypair).where(*clauses))
    order = listing.order_by(orderings, KEYPAIR_ORDER_COLUMNS) or [Keypair.created_at.asc()]
    page = await db.scalars(
        select(Keypair)
        .where(*clauses)
        .order_by(*order, Keypair.access_key)
        .limit(limit)
        .offset(offset)
    )
    return list(page), int(total or 0)


async def get_keypair(db: DBSession, access_key: str) -> Keypair | None:
    """A keypair, active or not."""
    return await db.get(Keypair, access_key)


async def list_users_page(
    db: DBSession,
    *,
    domain_name: str | None = None,
    conditions: Sequence[listing.Condition] = (),
    orderings: Sequence[listing.Ordering] = (),
    limit: int,
    offset: int,
) -> tuple[list[User], int]:
    """One page of users (oldest first by default) and how many match in all."""
    clauses = listing.where(conditions, USER_FILTER_COLUMNS)
    if domain_name is not None:
        clauses.append(User.domain_name == domain_name)
    total = await db.scalar(select(func.count()).select_from(User).where(*clauses))
    order = listing.order_by(orderings, USER_ORDER_COLUMNS) or [User.created_at.asc()]
    page = await db.scalars(
        select(User).where(*clauses).order_by(*order, User.id).limit(limit).offset(offset)
    )
    return list(page), int(total or 0)


async def get_user(
    db: DBSession, *, email: str | None = None, user_id: uuid.UUID | None = None
) -> User | None:
    if user_id is not None:
        return await db.get(User, user_id)
    return await db.scalar(select(User).where(User.email == email))


async def users_by_id(db: DBSession, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, User]:
    return {u.id: u for u in await db.scalars(select(User).where(User.id.in_(ids)))}


async def projects_by_id(db: DBSession) -> dict[uuid.UUID, Project]:
    """Every project (there are few: tenancy is per domain and project)."""
    return {p.id: p for p in await db.scalars(select(Project))}


async def main_access_keys(db: DBSession, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each user's main keypair: the oldest active one."""
    main: dict[uuid.UUID, str] = {}
    for kp in await db.scalars(
        select(Keypair)
        .where(Keypair.user_id.in_(user_ids), Keypair.is_active.is_(True))
        .order_by(Keypair.created_at.desc())
    ):
        main[kp.user_id] = kp.access_key  # the oldest comes last and wins
    return main
