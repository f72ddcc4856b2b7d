"""Reading a kernel's work directory on the host for `session ls` and `session download`.

The node runs as root and the work directory belongs to the kernel, whose code is hostile: it
may plant links (to /etc/shadow, to another kernel's folder), FIFOs, or swap a folder for a link
while we read. So every step opens relative to the folder before it with O_NOFOLLOW (a link
anywhere on the path fails with ELOOP/ENOTDIR), files are read through the descriptor that was
checked to be a regular file, and inside a downloaded folder links and special files are left
out. All functions block; the node calls them in worker threads.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from node.errors import NodeError
from wire import FileEntry, format_bytes, work_path_parts

MAX_ENTRIES = 10_000  # in one listing, and in one downloaded folder
MAX_DEPTH = 32  # of a downloaded folder
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under a file's name must not hang the node
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class FileRejected(NodeError):
    """A path the user named is outside the work directory, missing, or not what was asked."""


def _parts(raw: str) -> list[str]:
    try:
        return work_path_parts(raw)
    except ValueError as exc:
        raise FileRejected(str(exc)) from exc


def _name(raw: str) -> str:
    # file names are bytes on Linux; JSON needs text
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@contextmanager
def _open_dir(work_dir: Path, parts: list[str], raw: str) -> Iterator[int]:
    fd = os.open(work_dir, _DIR_FLAGS)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError as exc:
                raise FileRejected(f"{raw}: no such folder") from exc
            except OSError as exc:  # ELOOP, ENOTDIR: a link or a file on the way
                raise FileRejected(f"{raw}: {part!r} is not a folder") from exc
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def list_folder(work_dir: Path, raw: str) -> list[FileEntry]:
    """The entries of a folder (links listed as links, never followed), sorted by name."""
    with _open_dir(work_dir, _parts(raw), raw) as fd:
        names = sorted(os.listdir(fd))
        if len(names) > MAX_ENTRIES:
            raise FileRejected(f"{raw}: more than {MAX_ENTRIES} entries; list a smaller folder")
        entries = []
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we listed
            entries.append(
                FileEntry(
                    _name(name),
                    stat.filemode(st.st_mode),
                    st.st_size,
                    st.st_ctime,
                    st.st_mtime,
                    st.st_atime,
                )
            )
        return entries


def archive(work_dir: Path, raw: str, max_bytes: int) -> bytes:
    """A tar archive of one file (under its own name) or folder (with its tree)."""
    parts = _parts(raw)
    if not parts:
        raise FileRejected(f"{raw}: name a file or folder inside the work directory")
    *parents, name = parts
    out = io.BytesIO()
    with _open_dir(work_dir, parents, raw) as fd, tarfile.open(fileobj=out, mode="w") as tar:
        budget = _Budget(raw, max_bytes)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise FileRejected(f"{raw}: no such file or folder") from exc
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise FileRejected(f"{raw}: not a regular file or folder")
        _add(tar, fd, name, name, budget, 0)
    return out.getvalue()


class _Budget:
    def __init__(self, raw: str, max_bytes: int) -> None:
        self.raw, self.max_bytes, self.left, self.entries = raw, max_bytes, max_bytes, 0

    def take(self, size: int) -> None:
        self.left -= size + tarfile.BLOCKSIZE  # the data and its header
        self.entries += 1
        if self.left < 0:
            raise FileRejected(
                f"{self.raw}: larger than the download limit of {format_bytes(self.max_bytes)}"
            )
        if self.entries > MAX_ENTRIES:
            raise FileRejected(f"{self.raw}: more than {MAX_ENTRIES} files and folders")


def _add(
    tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str, budget: _Budget, depth: int
) -> None:
    try:
        kind = stat.S_IFMT(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        if kind not in (stat.S_IFREG, stat.S_IFDIR):
            return  # links, FIFOs, sockets: left out, never opened
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return  # swapped for a link meanwhile (ELOOP), or gone: left out
    try:
        st = os.fstat(fd)  # of what we opened: a swap after the check above changes nothing
        info = tarfile.TarInfo(_name(arcname))
        info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
        if stat.S_ISREG(st.st_mode):
            budget.take(st.st_size)
            data = _read(fd, st.st_size)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        elif stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
            budget.take(0)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            for child in sorted(os.listdir(fd)):
                _add(tar, fd, child, f"{arcname}/{child}", budget, depth + 1)
    finally:
        os.close(fd)


def _read(fd: int, size: int) -> bytes:
    """At most `size` bytes: a file that grows while we read is cut where it was measured."""
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
