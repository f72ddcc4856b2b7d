"""Users and keypairs: bootstrap of the first admin, creation, listing, removal, and the active
keypairs that sign requests, kept in memory (`Signers`)."""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import QueryableAttribute

from controlplane import listing, passwords, tenancy, users
from controlplane.db.models import Domain, Keypair, Project, ProjectMember, User
from controlplane.errors import InvalidAPIParams, KeypairNotFound
from controlplane.memo import Memo, Snapshot
from controlplane.secretbox import SecretBox, SecretBoxError

ADMIN_EMAIL = "admin@shipyard.local"
_UPPER_DIGITS = string.ascii_uppercase + string.digits
# what a signer's answer is read from: a commit that writes one of these clears the memory
SIGNER_TABLES = ("keypairs", "users")


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


async def bootstrap(db: DBSession, box: SecretBox) -> tuple[Keypair, str, str] | None:
    """Create the default domain, project and the admin with a keypair and a password, once.

    Returns the admin keypair, its secret key and the admin's password when it was created
    now, None when it already existed.
    """
    if await db.get(Domain, tenancy.DEFAULT_DOMAIN) is None:
        await tenancy.create_domain(db, tenancy.DEFAULT_DOMAIN)
    admins = await db.scalar(
        select(func.count()).select_from(User).where(User.role == "superadmin")
    )
    if admins:
        return None
    password = passwords.generate()
    admin = await users.create_user(
        db, ADMIN_EMAIL, role="superadmin", domain_name=tenancy.DEFAULT_DOMAIN, password=password
    )
    keypair, secret = _new_keypair(box, admin, is_admin=True)
    db.add(keypair)
    await db.flush()
    return keypair, secret, password


async def get_active(db: DBSession, access_key: str) -> Keypair | None:
    """The keypair if it and its user are active."""
    return await db.scalar(
        select(Keypair)
        .join(User, User.id == Keypair.user_id)
        .where(
            Keypair.access_key == access_key,
            Keypair.is_active.is_(True),
            User.status == "active",
        )
    )


@dataclass(frozen=True)
class _Signer:
    keypair: Snapshot[Keypair]
    user: Snapshot[User]
    secret_key: str  # in clear


class Signers:
    """The active keypairs that sign requests, with their users and secret keys, from memory
    after the first request: the database and the unsealing are skipped on every later one.

    What is kept is cleared by any commit that writes keypairs or users (controlplane/memo.py),
    so a keypair or user deactivated, or a role changed, counts from the next request on. Each
    call gets its own copy of the rows (detached, as a closed session leaves them), so what a
    handler does with it never reaches another request."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self.memo: Memo[str, _Signer] = Memo(SIGNER_TABLES)

    async def get(
        self, db: async_sessionmaker[DBSession], access_key: str
    ) -> tuple[Keypair, str] | None:
        """The keypair if it and its user are active, and its secret key."""

        async def load() -> _Signer | None:
            async with db() as session:
                keypair = await get_active(session, access_key)
            if keypair is None:
                return None
            secret = secret_key(self._box, keypair)
            return _Signer(Snapshot.of(keypair), Snapshot.of(keypair.user), secret)

        signer = await self.memo.get_or_load(access_key, load)
        if signer is None:
            return None
        return signer.keypair.copy(user=signer.user.copy()), signer.secret_key


async def create(
    db: DBSession,
    box: SecretBox,
    email: str,
    *,
    is_admin: bool = False,
    domain_name: str = tenancy.DEFAULT_DOMAIN,
) -> tuple[Keypair, str]:
    """A new keypair for the user with this e-mail (the user is created when new, in
    `domain_name`), and its secret key: the database keeps it sealed."""
    user = await users.get_by_email(db, email)
    if user is None:
        role = "admin" if is_admin else "user"
        user = await users.create_user(db, email, role=role, domain_name=domain_name)
    elif user.status == "deleted":
        raise InvalidAPIParams(f"the user {user.email} is deleted")
    keypair, secret = _new_keypair(box, user, is_admin=is_admin)
    db.add(keypair)
    await db.flush()
    return keypair, secret


async def list_all(db: DBSession, *, domain_name: str | None = None) -> list[Keypair]:
    """Every keypair (of one domain's users)."""
    query = select(Keypair).order_by(Keypair.created_at)
    if domain_name is not None:
        query = query.where(
            Keypair.user_id.in_(select(User.id).where(User.domain_name == domain_name))
        )
    return list(await db.scalars(query))


async def delete(db: DBSession, access_key: str, *, requester: Keypair) -> None:
    """Deactivate a keypair (sessions keep their owner reference)."""
    if access_key == requester.access_key:
        raise InvalidAPIParams("you cannot remove the keypair this request is signed with")
    keypair = await get_active(db, access_key)
    if keypair is None or not tenancy.can_see_owner(
        requester, keypair.user.domain_name, keypair.access_key
    ):
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
    "status": User.status,
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
    project_id: uuid.UUID | None = None,
    statuses: Sequence[str] | None = None,
    conditions: Sequence[listing.Condition] = (),
    orderings: Sequence[listing.Ordering] = (),
    limit: int,
    offset: int,
) -> tuple[list[User], int]:
    """One page of users (oldest first by default) and how many match in all."""
    clauses = listing.where(conditions, USER_FILTER_COLUMNS)
    if domain_name is not None:
        clauses.append(User.domain_name == domain_name)
    if project_id is not None:
        clauses.append(
            User.id.in_(select(ProjectMember.user_id).where(ProjectMember.project_id == project_id))
        )
    if statuses is not None:
        clauses.append(User.status.in_(statuses))
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
