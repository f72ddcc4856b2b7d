"""Sharing folders (docs/backendai-api.md §12.3): an owner invites users to their own folder
and may revoke their access (unshare); an invitee accepts (a share row) or rejects, the inviter
cancels; an admin shares a project's folder with members of that project directly; a user may
leave a folder shared with them.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import tenancy
from controlplane.db.models import Project, User, VFolder, VFolderInvitation, VFolderShare
from controlplane.db.types import utcnow
from controlplane.errors import (
    InvalidAPIParams,
    ObjectNotFound,
    VFolderAlreadyExists,
    VFolderNotFound,
    VFolderPermissionDenied,
)
from controlplane.vfolders._folders import Access, accessible


class InvitationNotFound(ObjectNotFound):
    title = "No such vfolder invitation."


async def _users_by_email(db: DBSession, emails: list[str]) -> list[User]:
    return list(await db.scalars(select(User).where(User.email.in_(emails))))


async def invite(
    db: DBSession, inviter: User, access: Access, emails: list[str], permission: str
) -> list[str]:
    """Invite users to one's own folder; returns the emails invited now."""
    folder = access.folder
    if not access.is_owner or folder.ownership_type != "user":
        raise VFolderPermissionDenied("only the owner of a user folder may invite others")
    if folder.name.startswith("."):
        raise VFolderPermissionDenied("dot folders are mounted automatically and not shared")
    invitees = [u for u in await _users_by_email(db, emails) if u.id != inviter.id]
    if not invitees:
        raise InvitationNotFound(f"none of {', '.join(emails)} is another user")
    invited = []
    for user in invitees:
        if any(a.folder.id == folder.id for a in await accessible(db, user)):
            raise VFolderAlreadyExists(f"{user.email} already has folder {folder.name!r}")
        pending = await db.scalar(
            select(VFolderInvitation).where(
                VFolderInvitation.vfolder_id == folder.id,
                VFolderInvitation.invitee_id == user.id,
                VFolderInvitation.state == "pending",
            )
        )
        if pending is None:
            db.add(
                VFolderInvitation(
                    vfolder_id=folder.id,
                    inviter_id=inviter.id,
                    invitee_id=user.id,
                    permission=permission,
                    state="pending",
                )
            )
            invited.append(user.email)
    return invited


async def invitations(
    db: DBSession, user: User
) -> list[tuple[VFolderInvitation, VFolder, str, str]]:
    """Pending invitations to or from `user`: (invitation, folder, inviter email, invitee)."""
    query = select(VFolderInvitation).where(
        VFolderInvitation.state == "pending",
        (VFolderInvitation.invitee_id == user.id) | (VFolderInvitation.inviter_id == user.id),
    )
    found = []
    for inv in await db.scalars(query.order_by(VFolderInvitation.created_at)):
        folder = await db.get(VFolder, inv.vfolder_id)
        inviter, invitee = await db.get(User, inv.inviter_id), await db.get(User, inv.invitee_id)
        if folder is not None and inviter is not None and invitee is not None:
            found.append((inv, folder, inviter.email, invitee.email))
    return found


async def _pending(db: DBSession, inv_id: str) -> VFolderInvitation:
    try:
        key = uuid.UUID(inv_id)
    except ValueError:
        raise InvalidAPIParams(f"{inv_id!r} is not an invitation id") from None
    inv = await db.get(VFolderInvitation, key)
    if inv is None or inv.state != "pending":
        raise InvitationNotFound(f"no pending invitation {inv_id}")
    return inv


async def accept(db: DBSession, user: User, inv_id: str) -> None:
    inv = await _pending(db, inv_id)
    if inv.invitee_id != user.id:
        raise InvitationNotFound(f"no pending invitation {inv_id}")
    folder = await db.get(VFolder, inv.vfolder_id)
    assert folder is not None
    if any(a.folder.name == folder.name for a in await accessible(db, user)):
        raise VFolderAlreadyExists(f"you already have a folder named {folder.name!r}")
    db.add(VFolderShare(vfolder_id=folder.id, user_id=user.id, permission=inv.permission))
    inv.state, inv.modified_at = "accepted", utcnow()


async def decline(db: DBSession, user: User, inv_id: str) -> None:
    """The invitee rejects, or the inviter cancels; anyone else sees no such invitation."""
    inv = await _pending(db, inv_id)
    if user.id == inv.invitee_id:
        inv.state = "rejected"
    elif user.id == inv.inviter_id:
        inv.state = "canceled"
    else:
        raise InvitationNotFound(f"no pending invitation {inv_id}")
    inv.modified_at = utcnow()


async def share(db: DBSession, folder: VFolder, emails: list[str], permission: str) -> list[str]:
    """Give members of a project folder's project a permission of their own (admin)."""
    project = await db.get(Project, folder.project_id) if folder.project_id else None
    if project is None:
        raise VFolderNotFound("Only project folders are directly sharable.")
    users = await _users_by_email(db, emails)
    members = {u.email for u in users if await tenancy.is_member(db, u, project)}
    outsiders = sorted(set(emails) - members)
    if outsiders:
        raise ObjectNotFound(f"not members of project {project.name}: {', '.join(outsiders)}")
    for user in users:
        row = await db.get(VFolderShare, (folder.id, user.id))
        if row is None:
            db.add(VFolderShare(vfolder_id=folder.id, user_id=user.id, permission=permission))
        else:
            row.permission = permission
    return [u.email for u in users]


async def unshare(db: DBSession, folder: VFolder, emails: list[str]) -> list[str]:
    removed = []
    for user in await _users_by_email(db, emails):
        row = await db.get(VFolderShare, (folder.id, user.id))
        if row is not None:
            await db.delete(row)
            removed.append(user.email)
    return removed


async def leave(db: DBSession, user: User, access: Access) -> None:
    row = await db.get(VFolderShare, (access.folder.id, user.id))
    if row is None:
        raise InvalidAPIParams(f"folder {access.folder.name!r} is not shared with you")
    await db.delete(row)
