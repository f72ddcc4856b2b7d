"""/folders sharing (docs/backendai-api.md §12.3): invitations between users, an admin's shares
of project folders, leaving a shared folder."""

from __future__ import annotations

from quart import Blueprint

from controlplane import vfolders
from controlplane.api._context import core, requester, require_admin
from controlplane.api._typed import body, returns
from controlplane.api._vfolder_models import (
    Empty,
    InvitationItem,
    InvitationRef,
    Invitations,
    Invite,
    Invited,
    Leave,
    Left,
    Share,
    Shared,
    Unshare,
    Unshared,
)
from controlplane.db.models import User

bp = Blueprint("vfolder_sharing", __name__)


def _user() -> User:
    return requester().user


@bp.post("/folders/<name>/invite")
@returns(Invited, 201)
@body(Invite)
async def invite(name: str, data: Invite) -> Invited:
    """Invite users to one's own folder."""
    user = _user()
    async with core().db() as db:
        access = await vfolders.find(db, user, name)
        invited = await vfolders.sharing.invite(db, user, access, data.user_ids, data.perm)
        await db.commit()
    return Invited(invited_ids=invited)


@bp.get("/folders/invitations/list")
@returns(Invitations)
async def list_invitations() -> Invitations:
    """Pending invitations to or from the requester."""
    async with core().db() as db:
        found = await vfolders.sharing.invitations(db, _user())
    return Invitations(
        invitations=[
            InvitationItem(
                id=str(inv.id),
                inviter=inviter,
                invitee=invitee,
                perm=inv.permission,
                state=inv.state,
                created_at=str(inv.created_at),
                modified_at=str(inv.modified_at),
                vfolder_id=str(folder.id),
                vfolder_name=folder.name,
            )
            for inv, folder, inviter, invitee in found
        ]
    )


@bp.post("/folders/invitations/accept")
@returns(Empty)
@body(InvitationRef)
async def accept_invitation(data: InvitationRef) -> Empty:
    async with core().db() as db:
        await vfolders.sharing.accept(db, _user(), data.inv_id)
        await db.commit()
    return Empty()


@bp.delete("/folders/invitations/delete")
@returns(Empty)
@body(InvitationRef)
async def delete_invitation(data: InvitationRef) -> Empty:
    """The invitee rejects an invitation, or its inviter cancels it."""
    async with core().db() as db:
        await vfolders.sharing.decline(db, _user(), data.inv_id)
        await db.commit()
    return Empty()


@bp.post("/folders/<name>/share")
@returns(Shared, 201)
@body(Share)
async def share(name: str, data: Share) -> Shared:
    """Give members of a project folder's project their own permission (admin)."""
    admin = require_admin()
    async with core().db() as db:
        access = await vfolders.find(db, admin.user, name)
        shared = await vfolders.sharing.share(db, access.folder, data.emails, data.permission)
        await db.commit()
    return Shared(shared_emails=shared)


@bp.delete("/folders/<name>/unshare")
@returns(Unshared)
@body(Unshare)
async def unshare(name: str, data: Unshare) -> Unshared:
    """Take shares back: the owner of a user folder (revoking accepted invitations), or an
    admin for a project folder."""
    async with core().db() as db:
        access = await vfolders.find(db, _user(), name)
        if not (access.is_owner and access.folder.ownership_type == "user"):
            require_admin()
        removed = await vfolders.sharing.unshare(db, access.folder, data.emails)
        await db.commit()
    return Unshared(unshared_emails=removed)


@bp.post("/folders/<name>/leave")
@returns(Left)
@body(Leave)
async def leave(name: str, data: Leave) -> Left:
    """Stop having a folder that was shared with the requester."""
    user = _user()
    async with core().db() as db:
        await vfolders.sharing.leave(db, user, await vfolders.find(db, user, name))
        await db.commit()
    return Left(msg=f"left the shared folder {name}")
