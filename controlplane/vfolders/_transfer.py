"""Uploads and downloads: tokens, tus chunks appended on disk, files and tar archives read in
chunks. Nothing holds a file in memory: a chunk is written (or read) and dropped.

The official client sends the upload and download requests unsigned, to the URL that
`request-upload`/`request-download` returned, with the token in the query (docs/backendai-api.md
§6.3). A token is sealed with the control plane's secrets key (AES-GCM, controlplane/secretbox.py)
so it cannot be forged or altered, and names one folder, one path, one size and an expiry; it
outlives a restart of the control plane, so an upload can be resumed then too.

A partial upload lives in `<host>/.uploads/<upload id>`, outside the folder (a session never
sees half a file); its size is the tus offset, so a client whose connection dropped asks
`HEAD` for the offset and sends the rest. When it is complete it is renamed into the folder.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio

from controlplane.errors import AuthFailed, InvalidAPIParams, VFolderQuotaExceeded
from controlplane.secretbox import SecretBox, SecretBoxError
from controlplane.vfolders import _fs
from controlplane.vfolders._hosts import StorageHost

TOKEN_LIFETIME = 24 * 3600.0
CHUNK = 1 << 20  # read and written per thread hop
_BOUND = "vfolder-transfer"


@dataclass(frozen=True)
class Ticket:
    kind: str  # upload | download
    host: str
    folder: str  # the folder's id, hex
    path: str
    size: int  # upload: the file's whole size
    archive: bool
    upload_id: str
    expires: float
    max_size: int | None  # the folder's limit when the upload was granted

    def seal(self, box: SecretBox) -> str:
        return box.seal(json.dumps(asdict(self)), bound_to=_BOUND)

    @classmethod
    def open(cls, box: SecretBox, token: str, kind: str) -> Ticket:
        try:
            ticket = cls(**json.loads(box.unseal(token, bound_to=_BOUND)))
        except (SecretBoxError, ValueError, TypeError) as exc:
            raise AuthFailed("the transfer token is not valid") from exc
        if ticket.kind != kind or ticket.expires < time.time():
            raise AuthFailed(f"the token is not an unexpired {kind} token")
        return ticket

    @classmethod
    def new(
        cls,
        kind: str,
        host: str,
        folder: uuid.UUID,
        path: str,
        *,
        size: int = 0,
        archive: bool = False,
        max_size: int | None = None,
    ) -> Ticket:
        return cls(
            kind=kind,
            host=host,
            folder=folder.hex,
            path=path,
            size=size,
            archive=archive,
            upload_id=uuid.uuid4().hex,
            expires=time.time() + TOKEN_LIFETIME,
            max_size=max_size,
        )


def check_room(host: StorageHost, folder_id: uuid.UUID, max_size: int | None, adding: int) -> None:
    """Refuse to add `adding` bytes to a folder that would then exceed `max_size`."""
    if max_size is None:
        return
    used, _ = host.usage(folder_id)
    if used + adding > max_size:
        raise VFolderQuotaExceeded(
            f"the folder holds {used} of its {max_size} bytes: {adding} more do not fit"
        )


class UploadLocks:
    """One lock per upload in progress: a PATCH holds it while it writes, so a client that
    resumes after a dropped connection (HEAD, then PATCH) waits until the request the drop
    cut off has stopped writing, and reads an offset that no longer moves."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, upload_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(upload_id, (anyio.Lock(), 0))
        self._locks[upload_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[upload_id]
            if users == 1:
                del self._locks[upload_id]
            else:
                self._locks[upload_id] = (lock, users - 1)


def partial_size(host: StorageHost, ticket: Ticket) -> int:
    try:
        return (host.uploads / ticket.upload_id).stat().st_size
    except FileNotFoundError:
        return 0


async def append(
    host: StorageHost, ticket: Ticket, offset: int, chunks: AsyncIterator[bytes]
) -> int:
    """Append a tus PATCH body at `offset` (which must be the partial's size); the new offset."""
    current = await anyio.to_thread.run_sync(partial_size, host, ticket)
    if offset != current:
        raise UploadOffsetMismatch(f"Upload-Offset is {offset}, the upload has {current}", current)
    fd = await anyio.to_thread.run_sync(_open_partial, host, ticket)
    try:
        async for chunk in chunks:
            if offset + len(chunk) > ticket.size:
                raise InvalidAPIParams(f"the upload is {ticket.size} bytes; this goes past it")
            try:
                await anyio.to_thread.run_sync(os.pwrite, fd, chunk, offset)
            except OSError as exc:
                if exc.errno not in (errno.EDQUOT, errno.ENOSPC):
                    raise
                # with project quotas the kernel holds the partial to the folder's limit (XFS
                # says ENOSPC for a project over it)
                raise VFolderQuotaExceeded(
                    f"the folder (or its storage host) is full after {offset} bytes of"
                    f" {ticket.size}: {exc.strerror}"
                ) from exc
            offset += len(chunk)
    finally:
        os.close(fd)
    return offset


def _open_partial(host: StorageHost, ticket: Ticket) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(host.uploads / ticket.upload_id, flags, 0o600)
    try:
        host.claim(fd, uuid.UUID(ticket.folder))
    except BaseException:
        os.close(fd)
        raise
    return fd


class UploadOffsetMismatch(InvalidAPIParams):
    status, slug = 409, "upload-offset-mismatch"

    def __init__(self, msg: str, offset: int) -> None:
        super().__init__(msg)
        self.offset = offset


def finish(host: StorageHost, ticket: Ticket, uid: int) -> None:
    """Move a complete upload into its folder, creating the parent folders."""
    partial = host.uploads / ticket.upload_id
    folder_id = uuid.UUID(ticket.folder)
    root = host.folder_path(folder_id)
    # with project quotas the partial is charged to the folder already
    check_room(host, folder_id, ticket.max_size, 0 if host.quota_mode == "project" else ticket.size)
    if uid >= 0:
        os.chown(partial, uid, uid, follow_symlinks=False)
    os.chmod(partial, 0o644, follow_symlinks=False)
    with _fs.parent_of(root, ticket.path, create=True, uid=uid) as (fd, name):
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(info.st_mode):
                _fs.entry_stat(fd, name, ticket.path)  # says what it is
                raise InvalidAPIParams(f"{ticket.path!r} is a folder")
        os.rename(partial, name, dst_dir_fd=fd)


def create_empty(root: Path, path: str, uid: int) -> None:
    """A 0-byte upload: the official client sends no PATCH for it (§6.3)."""
    _fs.check_writable(root, path)
    with _fs.parent_of(root, path, create=True, uid=uid) as (fd, name):
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            file_fd = os.open(name, flags, 0o644, dir_fd=fd)
        except OSError as exc:
            _fs.entry_stat(fd, name, path)
            raise InvalidAPIParams(f"{path!r}: {exc.strerror}") from exc
        try:
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):  # swapped in since the check
                raise _fs.UnsafePath(f"{path!r} is not a regular file")
            os.ftruncate(file_fd, 0)
            if uid >= 0:
                os.fchown(file_fd, uid, uid)
        finally:
            os.close(file_fd)


async def read_range(fd: int, start: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes of an open file from `start`, in chunks; closes `fd` at the end."""
    try:
        while length > 0:
            data = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK, length), start)
            if not data:  # the file shrank meanwhile: the length promised is kept
                data = bytes(min(CHUNK, length))
            start += len(data)
            length -= len(data)
            yield data
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Member:
    name: str  # inside the archive
    path: str  # inside the folder
    header: bytes
    size: int  # of the file's data (0 for a folder)


def plan_archive(root: Path, path: str) -> tuple[list[Member], int]:
    """The members of a tar archive of a folder inside the folder, and its exact length (the
    official client needs Content-Length before the first byte)."""
    base = "/".join(_fs.split(path)) or "."
    top = Path(base).name if base != "." else "folder"
    members, total = [], 0
    for rel, info in _fs.walk_files(root, path):
        entry = tarfile.TarInfo(f"{top}/{rel}")
        entry.mtime = int(info.st_mtime)
        entry.mode = info.st_mode & 0o777
        if stat.S_ISDIR(info.st_mode):
            entry.type, size = tarfile.DIRTYPE, 0
        else:
            size = entry.size = info.st_size
        header = entry.tobuf(format=tarfile.PAX_FORMAT)
        members.append(Member(entry.name, f"{base}/{rel}", header, size))
        total += len(header) + size + _padding(size)
    return members, total + 2 * tarfile.BLOCKSIZE


def _padding(size: int) -> int:
    return -size % tarfile.BLOCKSIZE


async def stream_archive(root: Path, members: list[Member]) -> AsyncIterator[bytes]:
    for member in members:
        yield member.header
        if member.size:
            try:
                fd, _ = await anyio.to_thread.run_sync(_fs.open_file, root, member.path)
            except (_fs.UnsafePath, _fs.PathNotFound):
                fd = -1  # replaced or removed since the plan: zeros keep the length right
            if fd < 0:
                for block in _zeros(member.size):
                    yield block
            else:
                async for data in read_range(fd, 0, member.size):
                    yield data
        yield bytes(_padding(member.size))
    yield bytes(2 * tarfile.BLOCKSIZE)


def _zeros(size: int) -> Iterator[bytes]:
    while size > 0:
        yield bytes(min(CHUNK, size))
        size -= min(CHUNK, size)
