"""Users and keypairs: bootstrap of the first admin, creation, listing, removal."""

from __future__ import annotations

import secrets
import string

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import Domain, Keypair, Project, User
from controlplane.errors import InvalidAPIParams, KeypairNotFound

DEFAULT_DOMAIN = "default"
DEFAULT_PROJECT = "default"
ADMIN_EMAIL = "admin@shipyard.local"
_UPPER_DIGITS = string.ascii_uppercase + string.digits


def new_access_key() -> str:
    # Backend.AI's shape: 20 characters, "AKIA" + 16 upper-case letters and digits
    return "AKIA" + "".join(secrets.choice(_UPPER_DIGITS) for _ in range(16))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]


async def bootstrap(db: DBSession) -> Keypair | None:
    """Create the default domain, project and the admin with a keypair, once.

    Returns the admin keypair when it was created now, None when it already existed.
    """
    if await db.get(Domain, DEFAULT_DOMAIN) is None:
        db.add(Domain(name=DEFAULT_DOMAIN))
        db.add(Project(name=DEFAULT_PROJECT, domain_name=DEFAULT_DOMAIN))
        await db.flush()
    admins = await db.scalar(
        select(func.count()).select_from(User).where(User.role == "superadmin")
    )
    if admins:
        return None
    admin = User(email=ADMIN_EMAIL, role="superadmin", domain_name=DEFAULT_DOMAIN)
    db.add(admin)
    await db.flush()
    keypair = Keypair(
        access_key=new_access_key(), secret_key=new_secret_key(), user=admin, is_admin=True
    )
    db.add(keypair)
    await db.flush()
    return keypair


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


async def create(db: DBSession, email: str, *, is_admin: bool = False) -> Keypair:
    """A new keypair for the user with this e-mail; the user is created when new."""
    email = email.strip()
    if "@" not in email or len(email) > 256 or any(c.isspace() for c in email):
        raise InvalidAPIParams(f"{email!r} is not an e-mail address")
    user = await db.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, role="admin" if is_admin else "user", domain_name=DEFAULT_DOMAIN)
        db.add(user)
        await db.flush()
    keypair = Keypair(
        access_key=new_access_key(), secret_key=new_secret_key(), user=user, is_admin=is_admin
    )
    db.add(keypair)
    await db.flush()
    return keypair


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
