"""Virtual folders bound into kernels: the node binds only a folder directory directly inside
one of its configured storage roots (`vfolder_roots` in node.toml, the control plane's storage
hosts as this machine sees them), and only a real directory, never a symbolic link. So a
confused or compromised control plane cannot make it bind /etc or a session's own link."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from node.errors import NodeError
from node.runtime import Bind
from wire import Mount

FOLDER_DIR = re.compile(r"^[0-9a-f]{32}$")  # <root>/<folder id hex>


def binds(roots: Sequence[Path], mounts: Sequence[Mount]) -> list[Bind]:
    return [_bind(roots, mount) for mount in mounts]


def _bind(roots: Sequence[Path], mount: Mount) -> Bind:
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
    return Bind(source, str(target), read_only=mount.read_only)
