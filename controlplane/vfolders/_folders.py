"""Folders in the database: who may reach which folder by name, with what permission, and the
changes of their lifecycle (create, rename, trash, restore, purge, clone).

A user reaches a folder they own, a folder of a project they are a member of, or one shared
with them (an accepted invitation, an admin's share). Names are unique per owner, so two users
may both have a `data` folder; a name that reaches two folders (one's own and a shared one) is
ambiguous (404 too-many-vfolders, as Backend.AI's manager says). Anyone else gets 404 "No such
virtual folder." rather than a hint that it exists.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import tenancy
from controlplane.db.models import (
    ACTIVE_STATUSES,
    Project,
    ProjectMember,
    ResourcePolicy,
    Session,
    User,
    VFolder,
    VFolderInvitation,
    VFolderMount,
    VFolderShare,
)
from controlplane.db.types import utcnow
from controlplane.errors import (
    InvalidAPIParams,
    ObjectNotFound,
    TooManyVFolders,
    VFolderAlreadyExists,
    VFolderInUse,
    VFolderNotFound,
    VFolderPermissionDenied,
    VFolderQuotaExceeded,
)

# each allows what the one before allows, and more: ro reads; rw also writes, makes folders,
# renames and uploads; wd ("write-delete") also deletes files and, for a project folder, itself
PERMISSIONS = ("ro", "rw", "wd")
READY, TRASHED = "ready", "delete-pending"
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
RESERVED_NAMES = {".", "..", "_", "invitations"}  # the last two are routes under /folders/


@dataclass(frozen=True)
class Access:
    folder: VFolder
    permission: str
    is_owner: bool

    def require(self, needed: str) -> Access:
        """Self, if the permission allows `needed`; the owner of a user folder may do anything."""
        if not self.is_owner and PERMISSIONS.index(self.permission) < PERMISSIONS.index(needed):
            raise VFolderPermissionDenied(
                f"folder {self.folder.name!r} is {self.permission} for you; this needs {needed}"
            )
        return self


@dataclass(frozen=True)
class FolderLimits:
    max_count: int | None  # folders a user may own; None: no limit
    max_size: int | None  # bytes per folder; None: no limit


async def folder_limits(db: DBSession, user: User) -> FolderLimits:
    """The folder limits of the owner's (user) resource policy; 0 there means no limit. They
    apply when a folder is made: a folder keeps its size limit when the policy changes later."""
    policy = await db.get(ResourcePolicy, user.resource_policy)
    if policy is None:
        return FolderLimits(max_count=None, max_size=None)
    return FolderLimits(policy.max_vfolder_count or None, policy.max_vfolder_size or None)


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or name in RESERVED_NAMES:
        raise InvalidAPIParams(
            f"{name!r} is not a folder name: 1-64 letters, digits, '.', '_' or '-'"
        )
    return name


async def accessible(db: DBSession, user: User, *, status: str = READY) -> list[Access]:
    """Every folder `user` reaches, with the permission they have on it: its own, those of
    the projects of its domain it is a member of, and those shared with it (a share
    overrides the default permission). One query."""
    member_of = (
        select(ProjectMember.project_id)
        .join(Project, Project.id == ProjectMember.project_id)
        .where(ProjectMember.user_id == user.id, Project.domain_name == user.domain_name)
    )
    share = (VFolderShare.vfolder_id == VFolder.id) & (VFolderShare.user_id == user.id)
    query = (
        select(VFolder, VFolderShare.permission)
        .outerjoin(VFolderShare, share)
        .where(
            VFolder.status == status,
            (VFolder.user_id == user.id)
            | VFolder.project_id.in_(member_of)
            | VFolderShare.user_id.is_not(None),
        )
    )
    found = [
        Access(folder, folder.permission, folder.user_id == user.id)
        if shared is None
        else Access(folder, shared, False)
        for folder, shared in (await db.execute(query)).all()
    ]
    return sorted(found, key=lambda a: (a.folder.name, a.folder.created_at))


async def find(db: DBSession, user: User, name: str, needed: str = "ro") -> Access:
    matches = [a for a in await accessible(db, user) if a.folder.name == name]
    if not matches:
        raise VFolderNotFound(f"VFolder {name} is not found or accessible.")
    if len(matches) > 1:
        raise TooManyVFolders(f"{len(matches)} folders named {name!r} reach you")
    return matches[0].require(needed)


async def _name_taken(
    db: DBSession, user_id: uuid.UUID | None, project_id: uuid.UUID | None, name: str
) -> bool:
    query = select(VFolder.id).where(VFolder.name == name, VFolder.status == READY)
    if project_id is not None:
        query = query.where(VFolder.project_id == project_id)
    else:
        query = query.where(VFolder.user_id == user_id)
    return (await db.scalar(query)) is not None


async def create(
    db: DBSession,
    user: User,
    *,
    name: str,
    host: str,
    project: Project | None,
    permission: str,
    usage_mode: str,
    max_size: int | None,
    cloneable: bool,
) -> VFolder:
    """A new folder row (flushed); the caller makes its directory before committing."""
    check_name(name)
    if project is not None and not await tenancy.is_member(db, user, project):
        raise VFolderNotFound(f"no project {project.name!r} of yours")
    if await _name_taken(db, user.id, project.id if project else None, name):
        raise VFolderAlreadyExists(f"a folder named {name!r} already exists")
    limits = await folder_limits(db, user)
    if project is None and limits.max_count is not None:
        owned = await db.scalar(
            select(func.count()).where(VFolder.user_id == user.id, VFolder.status == READY)
        )
        if (owned or 0) >= limits.max_count:
            raise VFolderQuotaExceeded(f"your policy allows {limits.max_count} folders")
    if limits.max_size is not None and (max_size is None or max_size > limits.max_size):
        if max_size is not None:
            raise VFolderQuotaExceeded(f"your policy allows folders of {limits.max_size} bytes")
        max_size = limits.max_size
    folder = VFolder(
        name=name,
        host=host,
        ownership_type="group" if project else "user",
        user_id=None if project else user.id,
        project_id=project.id if project else None,
        creator=user.email,
        permission=permission,
        usage_mode=usage_mode,
        max_size=max_size,
        cloneable=cloneable,
        status=READY,
    )
    db.add(folder)
    await db.flush()
    return folder


def _may_manage(access: Access, admin: bool, action: str) -> None:
    """A user folder is its owner's to rename or delete; a project folder is for those with
    `wd` on it, and for admins."""
    if access.folder.ownership_type == "user":
        if not access.is_owner:
            raise VFolderPermissionDenied(f"only the owner may {action} a folder")
    elif not admin:
        access.require("wd")


async def rename(db: DBSession, access: Access, new_name: str, *, admin: bool) -> None:
    folder = access.folder
    _may_manage(access, admin, "rename")
    check_name(new_name)
    if await _name_taken(db, folder.user_id, folder.project_id, new_name):
        raise VFolderAlreadyExists(f"a folder named {new_name!r} already exists")
    folder.name = new_name


async def sessions_using(db: DBSession, folder: VFolder) -> list[str]:
    """The names of the active sessions that mount `folder`."""
    query = (
        select(Session.name)
        .join(VFolderMount, VFolderMount.session_id == Session.id)
        .where(VFolderMount.vfolder_id == folder.id, Session.status.in_(ACTIVE_STATUSES))
    )
    return sorted(set(await db.scalars(query)))


async def trash(db: DBSession, access: Access, *, admin: bool) -> None:
    """Move a folder to the trash (files kept until an admin purges it)."""
    folder = access.folder
    _may_manage(access, admin, "delete")
    using = await sessions_using(db, folder)
    if using:
        raise VFolderInUse(
            f"folder {folder.name!r} is mounted by session {', '.join(using)}: end it first",
            data={"sessions": using},
        )
    folder.status, folder.deleted_at = TRASHED, utcnow()


def _in_domain(domain_name: str | None) -> ColumnElement[bool]:
    """Folders of the domain's users and projects; None: every folder (a superadmin's view)."""
    if domain_name is None:
        return true()
    return or_(
        VFolder.user_id.in_(select(User.id).where(User.domain_name == domain_name)),
        VFolder.project_id.in_(select(Project.id).where(Project.domain_name == domain_name)),
    )


async def get_trashed(db: DBSession, folder_id: uuid.UUID, domain_name: str | None) -> VFolder:
    """A trashed folder of the domain an admin manages (None: any)."""
    folder = await db.scalar(
        select(VFolder).where(
            VFolder.id == folder_id, VFolder.status == TRASHED, _in_domain(domain_name)
        )
    )
    if folder is None:
        raise ObjectNotFound(f"no folder {folder_id} in the trash")
    return folder


async def restore(db: DBSession, folder: VFolder) -> None:
    if await _name_taken(db, folder.user_id, folder.project_id, folder.name):
        raise VFolderAlreadyExists(
            f"its owner has another folder named {folder.name!r} now: rename that first"
        )
    folder.status, folder.deleted_at = READY, None


async def purge(db: DBSession, folder: VFolder) -> None:
    """Forget a trashed folder (the caller removes its directory after the commit)."""
    for model in (VFolderShare, VFolderInvitation, VFolderMount):
        for row in await db.scalars(select(model).where(model.vfolder_id == folder.id)):
            await db.delete(row)
    await db.delete(folder)


async def trashed(db: DBSession, domain_name: str | None) -> list[VFolder]:
    """The trash of the domain an admin manages (None: all of it)."""
    query = select(VFolder).where(VFolder.status == TRASHED, _in_domain(domain_name))
    return list(await db.scalars(query))
