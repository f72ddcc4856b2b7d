"""Folders mounted into sessions (docs/backendai-api.md §12.1-12.2): checked while the session
is created, recorded with it (so a folder in use is not deleted), and sent to the node with the
kernel as host-path binds.

A folder is mounted at /home/work/NAME unless the request names another place (relative to
/home/work, or absolute), read-only when the user's permission is `ro` or the request asks for
`ro`. Folders whose name starts with '.' are mounted as well, unasked. A project folder of
another project than the session's is skipped, as Backend.AI's manager does.

`NAME/sub/dir` mounts a folder inside a folder (at /home/work/NAME/sub/dir unless a path is
given); a folder is mounted once per session. The path is checked here (plain components, a
real directory reached without links) so that a typo is a 400, but a session can swap it for a
symbolic link before the kernel starts: the node therefore walks it again with
`openat(O_NOFOLLOW)` and binds the directory it holds open (node/vfolders.py), never a path.
"""

from __future__ import annotations

import itertools
import posixpath
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

import wire
from controlplane.db.models import Session, User, VFolder, VFolderMount
from controlplane.errors import InvalidAPIParams
from controlplane.vfolders import _fs
from controlplane.vfolders._folders import Access, accessible, find
from controlplane.vfolders._hosts import Hosts

WORK = "/home/work"
RESERVED = {
    ".terminfo",
    ".jupyter",
    ".tmux.conf",
    ".ssh",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/home",
    "/home/work",
}
RESERVED_RE = re.compile(r"^\.[a-z0-9]+(rc|_profile)$")
# system trees nothing may be mounted into (the runner, its socket, the accounts among them)
PROTECTED = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
)


@dataclass(frozen=True)
class MountRequest:
    """What a create asks to mount: `config.mounts`, `mount_map` and Shipyard's read-only marks."""

    names: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    read_only: set[str] = field(default_factory=set)


def _target(name: str, path: str | None) -> str:
    raw = path if path is not None else name
    if "\0" in raw:
        raise InvalidAPIParams(f"mount path {raw!r} is not usable")
    relative = raw.removeprefix(WORK + "/") if raw.startswith(WORK + "/") else raw
    if not relative or relative in RESERVED or RESERVED_RE.match(relative):
        raise InvalidAPIParams(f"{raw} is reserved for internal path.")
    target = posixpath.normpath(relative if relative.startswith("/") else f"{WORK}/{relative}")
    if (
        ".." in raw.split("/")
        or target in RESERVED
        or target.startswith(tuple(p + "/" for p in PROTECTED))
    ):
        raise InvalidAPIParams(f"{raw} is reserved for internal path.")
    return target


@dataclass(frozen=True)
class _Chosen:
    access: Access
    key: str  # as requested: NAME or NAME/sub/dir
    subpath: str  # inside the folder, "" for the folder itself
    path: str | None  # where the request wants it


async def plan(
    db: DBSession, hosts: Hosts, user: User, project_id: uuid.UUID, request: MountRequest
) -> list[VFolderMount]:
    """The mounts of a new session (unsaved rows), or InvalidAPIParams/VFolderNotFound."""
    values = list(request.paths.values())
    if len(set(values)) != len(values):
        raise InvalidAPIParams("Duplicate alias folder name exists.")
    clash = sorted(set(values) & set(request.paths))
    if clash:
        raise InvalidAPIParams(f"Alias name cannot be set to an existing folder name: {clash[0]}")
    chosen: dict[uuid.UUID, _Chosen] = {}
    for key in dict.fromkeys([*request.names, *request.paths]):
        name, _, sub = key.partition("/")
        parts = _fs.split(sub)
        access = await find(db, user, name)
        if access.folder.id in chosen:
            raise InvalidAPIParams(f"{name} is mounted twice: mount it (or a folder in it) once")
        if parts:
            root = hosts.get(access.folder.host).folder_path(access.folder.id)
            await anyio.to_thread.run_sync(_check_dir, root, parts, key)
        subpath = "/".join(parts)
        label = f"{name}/{subpath}" if subpath else name
        chosen[access.folder.id] = _Chosen(access, label, subpath, request.paths.get(key))
    for access in await accessible(db, user):
        if access.folder.name.startswith("."):
            chosen.setdefault(access.folder.id, _Chosen(access, access.folder.name, "", None))
    rows: list[VFolderMount] = []
    for choice in chosen.values():
        folder = choice.access.folder
        if folder.project_id is not None and folder.project_id != project_id:
            continue
        read_only = choice.access.permission == "ro" or bool(
            {choice.key, folder.name} & request.read_only
        )
        rows.append(
            VFolderMount(
                vfolder_id=folder.id,
                path=_target(choice.key, choice.path),
                read_only=read_only,
                subpath=choice.subpath,
            )
        )
    targets = sorted(row.path for row in rows)
    for outer, inner in itertools.pairwise(targets):
        if inner == outer or inner.startswith(outer + "/"):
            raise InvalidAPIParams(f"mount paths {outer} and {inner} overlap")
    return rows


def _check_dir(root: Path, parts: list[str], key: str) -> None:
    try:
        with _fs.opendir(root, parts):
            pass
    except _fs.UnsafePath as exc:
        raise InvalidAPIParams(f"{key}: not a folder inside the folder ({exc.msg})") from exc


async def attach(
    db: DBSession, hosts: Hosts, session: Session, user: User, request: MountRequest
) -> list[VFolderMount]:
    rows = await plan(db, hosts, user, session.project_id, request)
    for row in rows:
        row.session_id = session.id
        db.add(row)
    return rows


async def for_kernel(db: DBSession, hosts: Hosts, session_id: uuid.UUID) -> list[wire.Mount]:
    """What the node binds into the session's container."""
    query = (
        select(VFolderMount, VFolder)
        .join(VFolder, VFolder.id == VFolderMount.vfolder_id)
        .where(VFolderMount.session_id == session_id)
    )
    return [
        wire.Mount(
            str(hosts.get(folder.host).folder_path(folder.id)),
            row.path,
            row.read_only,
            subpath=row.subpath,
        )
        for row, folder in (await db.execute(query)).all()
    ]


async def mounted_names(db: DBSession, session_id: uuid.UUID) -> list[str]:
    query = (
        select(VFolder.name)
        .join(VFolderMount, VFolderMount.vfolder_id == VFolder.id)
        .where(VFolderMount.session_id == session_id)
    )
    return sorted(await db.scalars(query))
