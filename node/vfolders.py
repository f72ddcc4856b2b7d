"""Virtual folders bound into kernels: the node binds only a folder directory directly inside
one of its configured storage roots (`vfolder_roots` in node.toml, the control plane's storage
hosts as this machine sees them), and only a real directory, never a symbolic link. So a
confused or compromised control plane cannot make it bind /etc or a session's own link.

A folder inside a folder (`Mount.subpath`) is writable by sessions, which may swap any part of
its path for a link at any moment; Docker would follow that link on the host. So the node walks
the path itself with `openat(O_DIRECTORY | O_NOFOLLOW)` from the folder's descriptor, binds the
directory it then holds (hostfs.bind_dir_fd) on a root-owned mount point in the kernel's folder,
and hands Docker that mount point.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from node import hostfs
from node.errors import NodeError
from node.runtime import Bind
from wire import Mount

FOLDER_DIR = re.compile(r"^[0-9a-f]{32}$")  # <root>/<folder id hex>
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def binds(roots: Sequence[Path], mounts: Sequence[Mount], kdir: Path) -> list[Bind]:
    """The binds of `mounts`; a subfolder is bound first under `kdir` (blocking: mount(2))."""
    points = kdir / hostfs.MOUNTS_DIR
    return [_bind(roots, mount, points / str(i)) for i, mount in enumerate(mounts)]


def _bind(roots: Sequence[Path], mount: Mount, point: Path) -> Bind:
    source = Path(mount.source)
    target = PurePosixPath(mount.target)
    if not target.is_absolute() or ".." in target.parts:
        raise NodeError(f"mount target {mount.target!r} is not an absolute path")
    if not FOLDER_DIR.match(source.name) or source.parent not in roots:
        raise NodeError(f"{source} is not a folder of this node's vfolder_roots")
    try:
        info = os.lstat(source)
    except OSError as exc:
        raise NodeError(f"folder {source} is not on this node: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise NodeError(f"{source} is not a directory")
    if mount.subpath:
        _bind_subfolder(source, mount.subpath, point)
        source = point
    return Bind(source, str(target), read_only=mount.read_only)


def _bind_subfolder(folder: Path, subpath: str, point: Path) -> None:
    parts = subpath.split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise NodeError(f"{subpath!r} is not a plain path inside a folder")
    fd = os.open(folder, _DIR_FLAGS)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise NodeError(
                    f"{subpath!r} is not a folder reached without links in the folder"
                    f" ({exc.strerror})"
                ) from exc
            os.close(fd)
            fd = child
        point.mkdir(mode=0o700, parents=True)  # in the kernel's folder: root's
        try:
            hostfs.bind_dir_fd(fd, point)
        except OSError as exc:
            raise NodeError(str(exc)) from exc
    finally:
        os.close(fd)
