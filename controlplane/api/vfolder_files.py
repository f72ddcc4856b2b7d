"""/folders/<name>/... files, and the two unsigned transfer routes (docs/backendai-api.md §6.3).

Every path is resolved inside its folder by controlplane/vfolders/_fs.py (openat, O_NOFOLLOW):
`..`, absolute paths, symbolic links and device files are refused with a 400 naming the path.
Uploads are tus PATCHes to /folders/_/tus/upload, downloads GETs of /folders/_/download; both
carry the sealed token `request-upload`/`request-download` handed out instead of a signature.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

import anyio
from quart import Blueprint, Response, request

from controlplane import vfolders
from controlplane.api._context import core, public, requester
from controlplane.api._typed import body, documented, query, returns
from controlplane.api._vfolder_models import (
    DeleteFiles,
    Empty,
    FileList,
    ListFiles,
    MakeDir,
    MoveFile,
    RenameFile,
    RequestDownload,
    RequestUpload,
    TokenQuery,
    TransferGranted,
)
from controlplane.db.models import VFolder
from controlplane.errors import InvalidAPIParams, VFolderNotFound, VFolderQuotaExceeded
from controlplane.vfolders import StorageHost, transfer

bp = Blueprint("vfolder_files", __name__)
UPLOAD_URL, DOWNLOAD_URL = "/folders/_/tus/upload", "/folders/_/download"
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def _folder(name: str, needed: str) -> tuple[vfolders.Access, StorageHost]:
    async with core().db() as db:
        access = await vfolders.find(db, requester().user, name, needed)
    return access, core().vfolder_hosts.get(access.folder.host)


async def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


@bp.get("/folders/<name>/files")
@returns(FileList)
@body(ListFiles)
async def list_files(name: str, data: ListFiles) -> FileList:
    """The entries of a folder inside the folder (JSON body on GET, as the client sends it)."""
    access, host = await _folder(name, "ro")
    root = host.folder_path(access.folder.id)
    return FileList.of(await _in_thread(vfolders.fs.list_dir, root, data.path))


@bp.post("/folders/<name>/mkdir")
@returns(Empty, 201)
@body(MakeDir)
async def make_dir(name: str, data: MakeDir) -> Empty:
    access, host = await _folder(name, "rw")
    root, uid = host.folder_path(access.folder.id), core().config.vfolder_uid
    for path in [data.path] if isinstance(data.path, str) else data.path:
        await _in_thread(
            vfolders.fs.mkdir, root, path, parents=data.parents, exist_ok=data.exist_ok, uid=uid
        )
    return Empty()


@bp.post("/folders/<name>/rename-file")
@returns(Empty)
@body(RenameFile)
async def rename_file(name: str, data: RenameFile) -> Empty:
    """Rename an entry in place (`new_name` is a name, not a path)."""
    if "/" in data.new_name:
        raise InvalidAPIParams("new_name is a name, without '/': use move-file to move")
    access, host = await _folder(name, "rw")
    parent = data.target_path.rstrip("/").rpartition("/")[0]
    target = f"{parent}/{data.new_name}" if parent else data.new_name
    root = host.folder_path(access.folder.id)
    await _in_thread(vfolders.fs.move, root, data.target_path, target, core().config.vfolder_uid)
    return Empty()


@bp.post("/folders/<name>/move-file")
@returns(Empty)
@body(MoveFile)
async def move_file(name: str, data: MoveFile) -> Empty:
    access, host = await _folder(name, "rw")
    root = host.folder_path(access.folder.id)
    await _in_thread(vfolders.fs.move, root, data.src, data.dst, core().config.vfolder_uid)
    return Empty()


@bp.delete("/folders/<name>/delete-files")
@returns(Empty)
@body(DeleteFiles)
async def delete_files(name: str, data: DeleteFiles) -> Empty:
    access, host = await _folder(name, "wd")
    root = host.folder_path(access.folder.id)
    for path in data.files:
        await _in_thread(vfolders.fs.delete, root, path, recursive=data.recursive)
    return Empty()


@bp.post("/folders/<name>/request-upload")
@returns(TransferGranted)
@body(RequestUpload)
async def request_upload(name: str, data: RequestUpload) -> TransferGranted:
    """A token to upload one file with tus; a 0-byte file is made now (no PATCH comes)."""
    access, host = await _folder(name, "rw")
    folder, uid = access.folder, core().config.vfolder_uid
    root = host.folder_path(folder.id)
    await _in_thread(vfolders.fs.check_writable, root, data.path)
    await _in_thread(transfer.check_room, host, folder.id, folder.max_size, data.size)
    if data.size == 0:
        await _in_thread(transfer.create_empty, root, data.path, uid)
    ticket = transfer.Ticket.new(
        "upload", host.name, folder.id, data.path, size=data.size, max_size=folder.max_size
    )
    return TransferGranted(token=ticket.seal(core().secrets), url=_url(UPLOAD_URL))


@bp.post("/folders/<name>/request-download")
@returns(TransferGranted)
@body(RequestDownload)
async def request_download(name: str, data: RequestDownload) -> TransferGranted:
    """A token to download a file, or with `archive` a folder as a tar archive."""
    if data.path is None:
        raise InvalidAPIParams("path is required", data={"path": "Field required"})
    access, host = await _folder(name, "ro")
    root = host.folder_path(access.folder.id)
    if data.archive:
        await _in_thread(vfolders.fs.list_dir, root, data.path)  # exists, and is a folder
    else:
        fd, _ = await _in_thread(vfolders.fs.open_file, root, data.path)
        await _in_thread(os.close, fd)
    ticket = transfer.Ticket.new(
        "download", host.name, access.folder.id, data.path, archive=data.archive
    )
    return TransferGranted(token=ticket.seal(core().secrets), url=_url(DOWNLOAD_URL))


def _url(path: str) -> str:
    return request.host_url.rstrip("/") + path


async def _ticket_host(token: str, kind: str) -> tuple[transfer.Ticket, StorageHost]:
    """The ticket's storage host, if its folder is still there (not trashed or purged)."""
    ticket = transfer.Ticket.open(core().secrets, token, kind)
    async with core().db() as db:
        folder = await db.get(VFolder, uuid.UUID(ticket.folder))
    if folder is None or folder.status != vfolders.READY:
        raise VFolderNotFound("the folder of this transfer is gone")
    return ticket, core().vfolder_hosts.get(ticket.host)


def _tus_headers(offset: int, ticket: transfer.Ticket) -> dict[str, str]:
    return {
        "Upload-Offset": str(offset),
        "Upload-Length": str(ticket.size),
        "Tus-Resumable": "1.0.0",
        "Cache-Control": "no-store",
    }


@bp.patch(UPLOAD_URL)
@public
@query(TokenQuery)
@documented({204: None})
async def tus_patch(args: TokenQuery) -> Response:
    """Append a chunk (tus PATCH, `Upload-Offset` = the bytes already sent); 204 with the new
    offset. A 409 carries the offset to resume from."""
    ticket, host = await _ticket_host(args.token, "upload")
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        raise InvalidAPIParams("the Upload-Offset header must be a number") from None
    chunks: AsyncIterator[bytes] = aiter(request.body)
    async with core().uploads.hold(ticket.upload_id):
        try:
            offset = await transfer.append(host, ticket, offset, chunks)
            if offset == ticket.size:
                path = f"{args.dst_dir.strip('/')}/{ticket.path}" if args.dst_dir else ticket.path
                done = transfer.Ticket(**{**ticket.__dict__, "path": path})
                await _in_thread(transfer.finish, host, done, core().config.vfolder_uid)
        except transfer.UploadOffsetMismatch as exc:
            return Response(exc.msg, 409, headers=_tus_headers(exc.offset, ticket))
        except VFolderQuotaExceeded:  # what arrived would only count against the folder
            await _in_thread((host.uploads / ticket.upload_id).unlink, missing_ok=True)
            raise
    return Response(status=204, headers=_tus_headers(offset, ticket))


@bp.route(UPLOAD_URL, methods=["HEAD"])
@public
@query(TokenQuery)
async def tus_head(args: TokenQuery) -> Response:
    """How much of the upload arrived (tus HEAD), to resume after a dropped connection."""
    ticket, host = await _ticket_host(args.token, "upload")
    async with core().uploads.hold(ticket.upload_id):  # not while a PATCH still writes
        offset = await _in_thread(transfer.partial_size, host, ticket)
    return Response(status=200, headers=_tus_headers(offset, ticket))


def _attachment(name: str) -> str:
    """A Content-Disposition no file name can break (quotes, newlines: RFC 6266 encoding)."""
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"


@bp.get(DOWNLOAD_URL)
@public
@query(TokenQuery)
@documented({200: None, 206: None})
async def download(args: TokenQuery) -> Response:
    """The file (ranges honoured: `Range: bytes=N-`, `If-Range`), or a folder as tar."""
    ticket, host = await _ticket_host(args.token, "download")
    root = host.folder_path(uuid.UUID(ticket.folder))
    name = ticket.path.rstrip("/").rpartition("/")[2] or "folder"
    if ticket.archive:
        members, length = await _in_thread(transfer.plan_archive, root, ticket.path)
        return _untimed(
            Response(
                transfer.stream_archive(root, members),
                200,
                content_type="application/x-tar",
                headers={
                    "Content-Length": str(length),
                    "Content-Disposition": _attachment(f"{name}.tar"),
                },
            )
        )
    fd, info = await _in_thread(vfolders.fs.open_file, root, ticket.path)
    size, modified = info.st_size, formatdate(info.st_mtime, usegmt=True)
    start, end, status = 0, size, 200
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if wanted and (if_range is None or if_range == modified):
        match = RANGE_RE.match(wanted.strip())
        if match and match.group(1):
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
        elif match and match.group(2):  # the last N bytes
            start = max(0, size - int(match.group(2)))
        status = 206
        empty = match is None or not (match.group(1) or match.group(2))
        if empty or start >= max(size, 1) or start >= end:
            await _in_thread(os.close, fd)
            return Response("", 416, headers={"Content-Range": f"bytes */{size}"})
    headers = {
        "Content-Length": str(end - start),
        "Last-Modified": modified,
        "Accept-Ranges": "bytes",
        "Content-Disposition": _attachment(name),
    }
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return _untimed(
        Response(
            transfer.read_range(fd, start, end - start),
            status,
            content_type="application/octet-stream",
            headers=headers,
        )
    )


def _untimed(response: Response) -> Response:
    """No RESPONSE_TIMEOUT (Quart's 60 s) for a download: a large file to a slow client takes
    longer, and cutting it would only make the client start over."""
    response.timeout = None
    return response
