"""Paths inside a folder, resolved the way a hostile folder cannot fool.

A folder is writable by the sessions that mount it, so anything in it may be a symbolic link
to /etc or a device node, and may change between two system calls. Every path an API call names
is therefore split into plain components (no `..`, no absolute path, no NUL) and walked one
directory at a time with `openat(O_DIRECTORY | O_NOFOLLOW)` from the folder's own descriptor:
a symbolic link anywhere on the way fails the open itself (ELOOP/ENOTDIR), with no window
between a check and a use. Files are opened with O_NOFOLLOW and checked with fstat on the
descriptor that is then read or written; only regular files and directories are ever served.

All functions block; callers run them in worker threads.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from controlplane.errors import InvalidAPIParams, ObjectNotFound

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_PATH = 4096


class UnsafePath(InvalidAPIParams):
    """A path that leaves its folder or names something that is not a file or a folder."""


class PathNotFound(ObjectNotFound):
    title = "No such file or directory."


def split(path: str) -> list[str]:
    """The components of a folder-relative path; '.' and '' are the folder itself."""
    if "\0" in path or len(path) > MAX_PATH:
        raise UnsafePath(f"{path[:64]!r} is not a usable path")
    if path.startswith("/"):
        raise UnsafePath(f"{path!r} is absolute: name a path inside the folder")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"{path!r} leaves the folder ('..' is not allowed)")
    return parts


def _refuse(exc: OSError, path: str) -> Exception:
    if exc.errno in (40, 20):  # ELOOP, ENOTDIR: a symlink (or a file) where a folder must be
        return UnsafePath(f"{path!r} goes through a symbolic link or a file, which is refused")
    if isinstance(exc, FileNotFoundError):
        return PathNotFound(f"{path!r} does not exist in the folder")
    return InvalidAPIParams(f"{path!r}: {exc.strerror or exc}")


@contextmanager
def opendir(root: Path, parts: list[str], *, create: bool = False, uid: int = -1) -> Iterator[int]:
    """A descriptor of the folder `parts` names below `root`; with `create`, missing folders
    are made (owned by `uid`, when not -1)."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for index, part in enumerate(parts):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                _own(fd, part, uid)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refuse(exc, "/".join(parts[: index + 1])) from exc
            os.close(fd)
            fd = child
        yield fd
    except FileNotFoundError as exc:
        raise _refuse(exc, "/".join(parts)) from exc
    finally:
        os.close(fd)


def _own(dir_fd: int, name: str, uid: int) -> None:
    if uid >= 0:
        os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)


@contextmanager
def parent_of(
    root: Path, path: str, *, create: bool = False, uid: int = -1
) -> Iterator[tuple[int, str]]:
    """(descriptor of the parent folder, last component) of a path naming an entry."""
    parts = split(path)
    if not parts:
        raise UnsafePath("name a file or folder inside the folder, not the folder itself")
    with opendir(root, parts[:-1], create=create, uid=uid) as fd:
        yield fd, parts[-1]


def entry_stat(dir_fd: int, name: str, path: str) -> os.stat_result:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise _refuse(exc, path) from exc
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "a device or special file"
        raise UnsafePath(f"{path!r} is {kind}, which is refused")
    return info


def open_file(root: Path, path: str) -> tuple[int, os.stat_result]:
    """A regular file opened for reading (O_NOFOLLOW, O_NONBLOCK so a FIFO cannot hang us)."""
    with parent_of(root, path) as (fd, name):
        try:
            file_fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd
            )
        except OSError as exc:
            raise _refuse(exc, path) from exc
    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(file_fd)
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device or special file"
        raise UnsafePath(f"{path!r} is {kind}, not a file")
    return file_fd, info


def check_writable(root: Path, path: str) -> None:
    """Refuse a path a file cannot be written to: through a link, or onto anything but a
    regular file. Folders on the way that do not exist yet are fine (they will be made)."""
    parts = split(path)
    if not parts:
        raise UnsafePath("name a file inside the folder, not the folder itself")
    for depth in range(len(parts) - 1, -1, -1):
        try:
            with opendir(root, parts[:depth]) as fd:
                if depth == len(parts) - 1:
                    try:
                        info = entry_stat(fd, parts[-1], path)
                    except PathNotFound:
                        return
                    if not stat.S_ISREG(info.st_mode):
                        raise UnsafePath(f"{path!r} is a folder, not a file")
                return
        except PathNotFound:
            continue  # a folder still to be made: check the one above


@dataclass(frozen=True)
class Entry:
    name: str
    type: str  # FILE | DIRECTORY | SYMLINK | OTHER
    size: int
    mode: int
    ctime: float
    atime: float
    mtime: float


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "FILE"
    if stat.S_ISDIR(mode):
        return "DIRECTORY"
    return "SYMLINK" if stat.S_ISLNK(mode) else "OTHER"


def list_dir(root: Path, path: str) -> list[Entry]:
    """The entries of a folder inside the folder (symbolic links listed, never followed)."""
    with opendir(root, split(path)) as fd:
        entries = []
        for name in sorted(os.listdir(fd)):
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            entries.append(
                Entry(
                    name,
                    _kind(info.st_mode),
                    info.st_size,
                    info.st_mode,
                    info.st_ctime,
                    info.st_atime,
                    info.st_mtime,
                )
            )
        return entries


def mkdir(root: Path, path: str, *, parents: bool, exist_ok: bool, uid: int) -> None:
    with parent_of(root, path, create=parents, uid=uid) as (fd, name):
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
        except FileExistsError as exc:
            if exist_ok and stat.S_ISDIR(entry_stat(fd, name, path).st_mode):
                return
            raise InvalidAPIParams(f"{path!r} already exists") from exc
        _own(fd, name, uid)


def move(root: Path, src: str, dst: str, uid: int) -> None:
    """Rename or move an entry within the folder; never over an existing one."""
    with parent_of(root, src) as (src_fd, src_name), parent_of(root, dst) as (dst_fd, dst_name):
        entry_stat(src_fd, src_name, src)
        try:
            os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            raise InvalidAPIParams(f"{dst!r} already exists")
        try:
            os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        except OSError as exc:
            raise _refuse(exc, dst) from exc


def delete(root: Path, path: str, *, recursive: bool) -> None:
    """Remove an entry; a symbolic link itself may be removed (its target is untouched)."""
    with parent_of(root, path) as (fd, name):
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            raise _refuse(exc, path) from exc
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=fd)
        elif recursive:
            shutil.rmtree(name, dir_fd=fd)  # fd-based on Linux: does not follow links
        else:
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError as exc:
                raise InvalidAPIParams(f"{path!r} is a non-empty folder: use recursive") from exc


def walk_files(root: Path, path: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every directory and regular file under `path` (folder-relative names, parents first);
    links and special files are skipped, never followed."""
    parts = split(path)
    with opendir(root, parts) as top:
        yield from _walk(top, "")


def _walk(fd: int, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    for name in sorted(os.listdir(fd)):
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        rel = prefix + name
        if stat.S_ISREG(info.st_mode):
            yield rel, info
        elif stat.S_ISDIR(info.st_mode):
            yield rel, info
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # replaced meanwhile
            try:
                yield from _walk(child, rel + "/")
            finally:
                os.close(child)


def usage(root: Path) -> tuple[int, int]:
    """(bytes, files) under a folder: the apparent sizes of its regular files."""
    total = count = 0
    for _, info in walk_files(root, "."):
        if stat.S_ISREG(info.st_mode):
            total += info.st_size
            count += 1
    return total, count


def copy_tree(src: Path, dst: Path, uid: int) -> None:
    """Copy a folder's directories and regular files into an empty folder (links and special
    files are left out, as everywhere)."""
    for rel, info in list(walk_files(src, ".")):
        if stat.S_ISDIR(info.st_mode):
            mkdir(dst, rel, parents=True, exist_ok=True, uid=uid)
            continue
        try:
            src_fd, _ = open_file(src, rel)
        except (UnsafePath, PathNotFound):
            continue  # replaced or removed meanwhile
        with open(src_fd, "rb") as reader:
            with parent_of(dst, rel, create=True, uid=uid) as (fd, name):
                out = os.open(
                    name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd
                )
            with open(out, "wb") as writer:
                os.fchown(out, uid, uid)
                shutil.copyfileobj(reader, writer, 1 << 20)
