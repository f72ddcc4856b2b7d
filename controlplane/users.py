"""Users: creation, status, role and password changes, and signing in with e-mail and password
(answered with the user's keypair, as Backend.AI's /auth/authorize does)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import passwords, tenancy
from controlplane.db.models import Domain, Keypair, User
from controlplane.errors import AuthFailed, InvalidAPIParams, ObjectNotFound, TooManyRequests

STATUSES = ("active", "inactive", "deleted")


def check_email(email: str) -> str:
    email = email.strip()
    if "@" not in email or len(email) > 256 or any(c.isspace() for c in email):
        raise InvalidAPIParams(f"{email!r} is not an e-mail address")
    return email


def _check_password(password: str) -> str:
    if len(password) < passwords.MIN_LENGTH:
        raise InvalidAPIParams(f"a password needs at least {passwords.MIN_LENGTH} characters")
    return password


async def get_by_email(db: DBSession, email: str) -> User | None:
    return await db.scalar(select(User).where(User.email == email.strip()))


async def find(db: DBSession, email: str) -> User:
    user = await get_by_email(db, email)
    if user is None:
        raise ObjectNotFound(f"there is no user {email!r}")
    return user


async def create_user(
    db: DBSession,
    email: str,
    *,
    role: str,
    domain_name: str,
    password: str | None = None,
) -> User:
    """A new active user, member of its domain's default project."""
    email = check_email(email)
    if role not in tenancy.ROLES:
        raise InvalidAPIParams(f"role {role!r}: one of {', '.join(tenancy.ROLES)}")
    if await db.get(Domain, domain_name) is None:
        raise ObjectNotFound(f"there is no domain {domain_name!r}")
    if await get_by_email(db, email) is not None:
        raise InvalidAPIParams(f"the user {email} already exists")
    user = User(
        email=email,
        role=role,
        domain_name=domain_name,
        password_hash=passwords.hash_password(_check_password(password)) if password else None,
    )
    db.add(user)
    await db.flush()
    default = await tenancy.find_project(db, domain_name, tenancy.DEFAULT_PROJECT)
    await tenancy.set_member(db, default, user, member=True)
    return user


async def update_user(
    db: DBSession,
    user: User,
    *,
    status: str | None = None,
    role: str | None = None,
    password: str | None = None,
) -> User:
    """Change what is given. An inactive or deleted user's keypairs stop signing requests."""
    if status is not None:
        if status not in STATUSES:
            raise InvalidAPIParams(f"status {status!r}: one of {', '.join(STATUSES)}")
        user.status = status
    if role is not None:
        if role not in tenancy.ROLES:
            raise InvalidAPIParams(f"role {role!r}: one of {', '.join(tenancy.ROLES)}")
        user.role = role
    if password is not None:
        user.password_hash = passwords.hash_password(_check_password(password))
    await db.flush()
    return user


async def sign_in(
    db: DBSession,
    guard: passwords.SignInGuard,
    *,
    email: str,
    password: str,
    domain_name: str | None,
    addr: str,
    now: datetime,
) -> Keypair:
    """The main (oldest active) keypair of the active user with this e-mail and password.

    Every failure says the same, so that the answer does not tell which e-mails exist.
    """
    wait = guard.retry_after(email, addr, now)
    if wait is not None:
        raise TooManyRequests(
            f"too many failed sign-ins: try again in {int(wait) + 1} seconds",
            data={"retry_after": int(wait) + 1},
        )
    user = await get_by_email(db, email)
    ok = passwords.verify(user.password_hash if user else None, password)
    keypair = None
    usable = ok and user is not None and user.status == "active"
    if usable and user is not None and domain_name in (None, "", user.domain_name):
        keypair = await db.scalar(
            select(Keypair)
            .where(Keypair.user_id == user.id, Keypair.is_active.is_(True))
            .order_by(Keypair.created_at)
            .limit(1)
        )
    if keypair is None:
        guard.failed(email, addr, now)
        raise AuthFailed("Unauthorized access: wrong e-mail, password or domain")
    guard.succeeded(email)
    return keypair
