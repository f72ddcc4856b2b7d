"""/folders: storage hosts and folders (docs/backendai-api.md §6.3, §12); sharing is in
vfolder_sharing.py.

Every route is owner-scoped through `vfolders.find`: a folder the requester cannot reach is 404
"No such virtual folder.", whoever owns it. The trash is the admins'.
"""

from __future__ import annotations

import uuid

import anyio
from quart import Blueprint, Response
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import tenancy, vfolders
from controlplane.api._context import core, requester, require_admin
from controlplane.api._typed import body, documented, returns
from controlplane.api._vfolder_models import (
    AllHostsView,
    CloneFolder,
    CreateFolder,
    Empty,
    FolderCreated,
    FolderInfo,
    FolderItem,
    FolderList,
    HostInfo,
    HostsView,
    RenameFolder,
    TrashItem,
    TrashList,
    TypeList,
    parse_size,
)
from controlplane.db.models import Project, User
from controlplane.errors import InvalidAPIParams, VFolderPermissionDenied

bp = Blueprint("vfolders", __name__)


def _user() -> User:
    return requester().user


def _size(value: str | int | None) -> int | None:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise InvalidAPIParams(str(exc), data={"quota": str(exc)}) from exc


@bp.get("/folders/_/hosts")
@returns(HostsView)
async def list_hosts() -> HostsView:
    """The storage hosts the requester may use, their capacity and quota mode."""
    requester()
    hosts = core().vfolder_hosts
    info = {}
    for host in hosts.all():
        total, used = await anyio.to_thread.run_sync(host.capacity)
        info[host.name] = HostInfo(
            backend="vfs",
            capabilities=["quota"],
            quota_mode=host.quota_mode,
            quota_mode_reason=host.no_project_quota or None,
            project_quota_capable=host.project_quota_capable,
            usage={"capacity_bytes": total, "used_bytes": used},
        )
    return HostsView(default=hosts.default, allowed=hosts.names(), volume_info=info)


@bp.get("/folders/_/all_hosts")
@returns(AllHostsView)
async def list_all_hosts() -> AllHostsView:
    """Every storage host (admin)."""
    require_admin()
    hosts = core().vfolder_hosts
    return AllHostsView(default=hosts.default, allowed=hosts.names())


@bp.get("/folders/_/allowed_types")
@returns(TypeList)
async def allowed_types() -> TypeList:
    requester()
    return TypeList(["user", "group"])


@bp.get("/folders")
@returns(FolderList)
async def list_folders() -> FolderList:
    """The folders the requester reaches: own, their projects', shared with them."""
    async with core().db() as db:
        found = await vfolders.accessible(db, _user())
    return FolderList([FolderItem.of(a) for a in found])


async def _project(db: DBSession, ref: str | None) -> Project | None:
    """A project the requester is a member of, by name or id (`vfolder create -g`); any
    other is refused as if it did not exist, so its name is not confirmed."""
    if ref is None:
        return None
    user = _user()
    for project in await tenancy.list_projects(db, domain_name=user.domain_name, member=user.id):
        if ref in (project.name, str(project.id), project.id.hex):
            return project
    raise InvalidAPIParams(f"no project {ref!r} of yours")


@bp.post("/folders")
@returns(FolderCreated, 201)
@body(CreateFolder)
async def create_folder(data: CreateFolder) -> FolderCreated:
    """A new folder on a storage host, owned by the requester or by one of their projects."""
    if data.unmanaged_path is not None:
        raise InvalidAPIParams("unmanaged folders are not supported: leave out unmanaged_path")
    the_core = core()
    host = the_core.vfolder_hosts.get(data.host)
    async with the_core.db() as db:
        folder = await vfolders.create(
            db,
            _user(),
            name=data.name,
            host=host.name,
            project=await _project(db, data.group),
            permission=data.permission,
            usage_mode=data.usage_mode,
            max_size=_size(data.quota),
            cloneable=data.cloneable,
        )
        await _commit_with_dir(db, host, folder.id, folder.max_size)
    return FolderCreated.of(folder)


async def _commit_with_dir(
    db: DBSession, host: vfolders.StorageHost, folder_id: uuid.UUID, max_size: int | None
) -> None:
    """Make the folder's directory, then commit its row; no row without a directory, and no
    directory left when the commit fails."""
    uid = core().config.vfolder_uid
    await anyio.to_thread.run_sync(host.make_folder, folder_id, uid, max_size)
    try:
        await db.commit()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(host.remove_folder, folder_id)
        raise


@bp.get("/folders/<name>")
@returns(FolderInfo)
async def folder_info(name: str) -> FolderInfo:
    """One folder the requester reaches, with its usage."""
    the_core = core()
    async with the_core.db() as db:
        access = await vfolders.find(db, _user(), name)
    folder = access.folder
    host = the_core.vfolder_hosts.get(folder.host)
    used, files = await anyio.to_thread.run_sync(host.usage, folder.id)
    item = FolderItem.of(access, cur_size=used)
    return FolderInfo(
        **item.model_dump(),
        num_files=files,
        numFiles=files,
        used_bytes=used,
        created=item.created_at,
        last_used=None,
    )


@bp.post("/folders/<name>/rename")
@returns(Empty)
@body(RenameFolder)
async def rename_folder(name: str, data: RenameFolder) -> Empty:
    async with core().db() as db:
        access = await vfolders.find(db, _user(), name)
        await vfolders.rename(db, access, data.new_name, admin=requester().is_admin)
        await db.commit()
    return Empty()


@bp.delete("/folders/<name>")
@documented({204: None})
async def delete_folder(name: str) -> Response:
    """Move a folder to the trash; refused while a session mounts it."""
    async with core().db() as db:
        access = await vfolders.find(db, _user(), name)
        await vfolders.trash(db, access, admin=requester().is_admin)
        await db.commit()
    return Response(status=204)


@bp.post("/folders/<name>/clone")
@returns(FolderCreated, 201)
@body(CloneFolder)
async def clone_folder(name: str, data: CloneFolder) -> FolderCreated:
    """A copy of a cloneable folder (or one's own), owned by the requester."""
    the_core = core()
    user = _user()
    async with the_core.db() as db:
        source = await vfolders.find(db, user, name)
        if not (source.folder.cloneable or source.is_owner):
            raise VFolderPermissionDenied(f"folder {name!r} is not cloneable")
        host = the_core.vfolder_hosts.get(data.target_host or source.folder.host)
        folder = await vfolders.create(
            db,
            user,
            name=data.target_name,
            host=host.name,
            project=None,
            permission=data.permission,
            usage_mode=data.usage_mode,
            max_size=source.folder.max_size,
            cloneable=data.cloneable,
        )
        source_host = the_core.vfolder_hosts.get(source.folder.host)
        src = source_host.folder_path(source.folder.id)
        uid = the_core.config.vfolder_uid
        await anyio.to_thread.run_sync(host.make_folder, folder.id, uid, folder.max_size)
        try:
            used, _ = await anyio.to_thread.run_sync(source_host.usage, source.folder.id)
            vfolders.transfer.check_room(host, folder.id, folder.max_size, used)
            await anyio.to_thread.run_sync(
                vfolders.fs.copy_tree, src, host.folder_path(folder.id), the_core.config.vfolder_uid
            )
            await db.commit()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(host.remove_folder, folder.id)
            raise
    return FolderCreated.of(folder)


# --- the trash (admins) -------------------------------------------------------------------------


@bp.get("/folders/_/trash")
@returns(TrashList)
async def list_trash() -> TrashList:
    """Folders deleted and not yet purged (admin)."""
    admin = require_admin()
    async with core().db() as db:
        found = await vfolders.trashed(db, tenancy.managed_domain(admin))
    return TrashList(
        items=[
            TrashItem(
                id=f.id.hex,
                name=f.name,
                host=f.host,
                ownership_type=f.ownership_type,
                creator=f.creator,
                deleted_at=str(f.deleted_at) if f.deleted_at else None,
            )
            for f in found
        ]
    )


def _folder_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidAPIParams(f"{raw!r} is not a folder id") from None


@bp.post("/folders/_/trash/<folder_id>/restore")
@returns(Empty)
async def restore_folder(folder_id: str) -> Empty:
    """Bring a folder back from the trash to its owner (admin)."""
    domain = tenancy.managed_domain(require_admin())
    async with core().db() as db:
        await vfolders.restore(db, await vfolders.get_trashed(db, _folder_id(folder_id), domain))
        await db.commit()
    return Empty()


@bp.delete("/folders/_/trash/<folder_id>")
@documented({204: None})
async def purge_folder(folder_id: str) -> Response:
    """Remove a trashed folder and its files for good (admin)."""
    domain = tenancy.managed_domain(require_admin())
    the_core = core()
    async with the_core.db() as db:
        folder = await vfolders.get_trashed(db, _folder_id(folder_id), domain)
        host = the_core.vfolder_hosts.get(folder.host)
        await vfolders.purge(db, folder)
        await db.commit()
    await anyio.to_thread.run_sync(host.remove_folder, folder.id)
    return Response(status=204)
