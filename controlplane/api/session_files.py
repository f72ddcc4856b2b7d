"""A running session's files and its lifecycle besides create/destroy (docs/backendai-api.md
§11, §6.4): `session ls`, `session download`, `session rename`, `session restart`,
`interrupt`, `complete`.

The paths a user names are checked here (inside /home/work, no '..') so that a bad one gets a
400 at once, and resolved by the node, which opens them without following any link the
container planted (node/workfiles.py).
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated

from pydantic import Field, field_validator
from quart import Blueprint, Response
from sqlalchemy import func, select

import wire
from controlplane import nodecalls
from controlplane import sessions as sessions_db
from controlplane.api._context import core, requester
from controlplane.api._session_models import OwnerQuery
from controlplane.api._typed import (
    CompatRequest,
    Reply,
    TarArchives,
    body,
    documented,
    query,
    returns,
)
from controlplane.db.models import ACTIVE_STATUSES, Session
from controlplane.errors import InvalidAPIParams, SessionAlreadyExists, SessionNotRunning
from controlplane.execution import main_kernel
from controlplane.nodecalls import NodeRefused

bp = Blueprint("session_files", __name__)
MAX_DOWNLOAD_FILES = 5  # as the 23.09 manager
MAX_ARCHIVE_SIZE = 2**20  # each part; the manager's limit too
WorkPath = Annotated[str, Field(max_length=4096)]


def _check_path(value: str) -> str:
    wire.work_path_parts(value)  # its ValueError says what is wrong
    return value


class ListFilesRequest(CompatRequest):
    path: WorkPath = Field(
        default=str(wire.WORK_ROOT),
        description="a folder: relative to /home/work, or absolute inside it",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)


class FileListing(Reply):
    """As the manager answers: `files` is a JSON-encoded list, `errors` empty on success."""

    files: str = Field(description="JSON list of {mode, size, ctime, mtime, atime, filename}")
    errors: str
    abspath: str


class DownloadRequest(CompatRequest):
    files: list[WorkPath] = Field(
        min_length=1,
        max_length=MAX_DOWNLOAD_FILES,
        description="files or folders, relative to /home/work or absolute inside it",
    )

    @field_validator("files")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        return [_check_path(v) for v in value]


class CompleteOptions(CompatRequest):
    row: int = 0
    col: int = 0
    line: str = ""
    post: str = ""


class CompleteRequest(CompatRequest):
    code: str = Field(max_length=65536, description="the code up to the cursor")
    options: CompleteOptions | None = None


class CompleteResult(Reply):
    status: str = "finished"
    completions: list[str]


class Completed(Reply):
    result: CompleteResult


class RenameQuery(OwnerQuery):
    name: str = Field(
        pattern=sessions_db.NAME_PATTERN,
        min_length=sessions_db.NAME_LENGTH[0],
        max_length=sessions_db.NAME_LENGTH[1],
        description="the new name: 4-64 ASCII letters, digits, '_', '-' or '.'",
    )


async def _running(ref: str, args: OwnerQuery) -> tuple[Session, str, str]:
    """The session, its node and its kernel, or 409 when it is not running."""
    async with core().db() as db:
        session = await sessions_db.find(
            db, requester(), ref, owner_access_key=args.owner_access_key
        )
    kernel = await main_kernel(core(), session)
    assert kernel.node_id is not None
    return session, kernel.node_id, str(kernel.id)


@bp.get("/session/<ref>/files")
@returns(FileListing)
@query(OwnerQuery)
@body(ListFilesRequest)
async def list_session_files(ref: str, args: OwnerQuery, data: ListFilesRequest) -> FileListing:
    """The entries of a folder in the session's work directory (links are not followed)."""
    _, node_id, kernel_id = await _running(ref, args)
    try:
        entries = await nodecalls.list_files(core().hub, node_id, kernel_id, data.path)
    except NodeRefused as exc:
        raise InvalidAPIParams(exc.msg) from exc
    files = [
        {
            "mode": e.mode,
            "size": e.size,
            "ctime": e.ctime,
            "mtime": e.mtime,
            "atime": e.atime,
            "filename": e.name,
        }
        for e in entries
    ]
    return FileListing(files=json.dumps(files), errors="", abspath=data.path)


@bp.get("/session/<ref>/download")
@documented({200: TarArchives})
@query(OwnerQuery)
@body(DownloadRequest)
async def download_session_files(ref: str, args: OwnerQuery, data: DownloadRequest) -> Response:
    """Files or folders of the work directory: multipart/mixed, one tar archive per path (a
    file under its own name, a folder with its tree; links are left out), at most 1 MiB each."""
    _, node_id, kernel_id = await _running(ref, args)
    try:
        archives = await nodecalls.download(
            core().hub, node_id, kernel_id, data.files, MAX_ARCHIVE_SIZE
        )
    except NodeRefused as exc:
        raise InvalidAPIParams(exc.msg) from exc
    boundary = secrets.token_hex(16)
    parts = []
    for archive in archives:
        head = (
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Encoding: identity\r\nContent-Length: {len(archive)}\r\n\r\n"
        )
        parts.append(head.encode() + archive + b"\r\n")
    payload = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return Response(payload, content_type=f"multipart/mixed; boundary={boundary}")


@bp.post("/session/<ref>/rename")
@documented({204: None})
@query(RenameQuery)
async def rename(ref: str, args: RenameQuery) -> Response:
    """Give a running session another name (unique among its owner's active sessions)."""
    async with core().db() as db:
        session = await sessions_db.find(
            db, requester(), ref, owner_access_key=args.owner_access_key
        )
        if session.status != "RUNNING":
            raise SessionNotRunning(
                f"Session {session.name} is {session.status}: only a running session can be renamed"
            )
        taken = await db.scalar(
            select(func.count())
            .select_from(Session)
            .where(
                Session.access_key == session.access_key,
                Session.name == args.name,
                Session.status.in_(ACTIVE_STATUSES),
                Session.id != session.id,
            )
        )
        if taken:
            raise SessionAlreadyExists(f"A session named {args.name!r} is already active.")
        session.name = args.name
        await db.commit()
    return Response(status=204)


@bp.post("/session/<ref>/interrupt")
@documented({204: None})
@query(OwnerQuery)
async def interrupt(ref: str, args: OwnerQuery) -> Response:
    """Interrupt the code running in the session (SIGINT: a query gets KeyboardInterrupt)."""
    _, node_id, kernel_id = await _running(ref, args)
    try:
        await nodecalls.interrupt(core().hub, node_id, kernel_id)
    except NodeRefused as exc:
        raise SessionNotRunning(exc.msg) from exc
    return Response(status=204)


@bp.post("/session/<ref>/complete")
@returns(Completed)
@query(OwnerQuery)
@body(CompleteRequest)
async def complete(ref: str, args: OwnerQuery, data: CompleteRequest) -> Completed:
    """What the last word of the code could complete to, from the session's interpreter (none
    while it is busy with a run)."""
    _, node_id, kernel_id = await _running(ref, args)
    try:
        items = await nodecalls.complete(core().hub, node_id, kernel_id, data.code)
    except NodeRefused as exc:
        raise SessionNotRunning(exc.msg) from exc
    return Completed(result=CompleteResult(completions=items))


@bp.patch("/session/<ref>")
@documented({204: None})
@query(OwnerQuery)
async def restart(ref: str, args: OwnerQuery) -> Response:
    """Restart the session's kernel in place: a fresh interpreter (runs in progress end), the
    files in /home/work kept. Answers once the kernel is ready again."""
    _, node_id, kernel_id = await _running(ref, args)
    try:
        await nodecalls.restart(core().hub, node_id, kernel_id)
    except NodeRefused as exc:
        raise SessionNotRunning(exc.msg) from exc
    return Response(status=204)
