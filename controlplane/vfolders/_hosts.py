"""Storage hosts: named directory trees that hold folders, `<root>/<folder id hex>`.

A host is a local directory (the installer's `vfolder_root`) or a shared filesystem (NFS and
the like) mounted at the same path on the control plane's machine and on every node, so that a
node can bind-mount a folder the API wrote into. Nothing here needs the filesystem to support
quotas: sizes are accounted by walking a folder, and the API refuses an upload that would take
a folder past its limit (`quota_mode` "accounted"). A session writing into a mounted folder is
not limited that way; project quotas (XFS `pquota`, ext4 `prjquota`) would be, and a host says
whether its filesystem is mounted with them (`project_quota_capable`) so that an operator knows.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from controlplane.errors import InvalidAPIParams, StorageHostUnusable

log = logging.getLogger(__name__)
QUOTA_OPTIONS = {"prjquota", "pquota", "pqnoenforce"}


@dataclass(frozen=True)
class StorageHost:
    name: str
    root: Path

    def folder_path(self, folder_id: uuid.UUID) -> Path:
        return self.root / folder_id.hex

    @property
    def uploads(self) -> Path:
        """Partial uploads, outside every folder (sessions never see half a file)."""
        return self.root / ".uploads"

    def prepare(self) -> None:
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.uploads.mkdir(mode=0o700, exist_ok=True)

    def make_folder(self, folder_id: uuid.UUID, uid: int) -> None:
        """The folder's directory, owned by the sessions' user so that they can write in it."""
        path = self.folder_path(folder_id)
        try:
            os.mkdir(path, 0o755)
            os.chown(path, uid, uid)
        except OSError as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise StorageHostUnusable(
                f"cannot make a folder owned by uid {uid} in {self.root} ({exc.strerror}): the"
                " control plane must be able to write there and to chown (CAP_CHOWN)"
            ) from exc

    def remove_folder(self, folder_id: uuid.UUID) -> None:
        shutil.rmtree(self.folder_path(folder_id), ignore_errors=True)  # never follows links

    def capacity(self) -> tuple[int, int]:
        """(total bytes, used bytes) of the filesystem under the host."""
        info = os.statvfs(self.root)
        total = info.f_blocks * info.f_frsize
        return total, total - info.f_bfree * info.f_frsize

    @property
    def quota_mode(self) -> str:
        return "accounted"

    @property
    def project_quota_capable(self) -> bool:
        return bool(_mount_options(self.root) & QUOTA_OPTIONS)


def _mount_options(path: Path) -> set[str]:
    """The options of the mount `path` lives on (longest mount point that contains it)."""
    best, options = "", set[str]()
    target = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    for line in lines:
        fields = line.split()
        point = fields[4]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            super_options = fields[fields.index("-") + 3] if "-" in fields else ""
            best, options = point, set(fields[5].split(",")) | set(super_options.split(","))
    return options


class Hosts:
    """The configured hosts and the default one."""

    def __init__(self, roots: dict[str, Path], default: str) -> None:
        self._hosts = {name: StorageHost(name, Path(root)) for name, root in roots.items()}
        self.default = default if default in self._hosts else None

    def prepare(self) -> None:
        """Make each host's directories; a host that cannot be written stays configured and
        its folder routes answer 503 saying why (the control plane still starts)."""
        for host in self._hosts.values():
            try:
                host.prepare()
            except OSError as exc:
                log.warning("storage host %s (%s) cannot be used: %s", host.name, host.root, exc)

    def names(self) -> list[str]:
        return sorted(self._hosts)

    def all(self) -> list[StorageHost]:
        return [self._hosts[name] for name in self.names()]

    def get(self, name: str | None) -> StorageHost:
        chosen = name or self.default
        if chosen is None or chosen not in self._hosts:
            raise InvalidAPIParams(
                f"no storage host {chosen!r}; the hosts are {', '.join(self.names())}"
            )
        return self._hosts[chosen]
