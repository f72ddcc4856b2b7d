"""Storage hosts: named directory trees that hold folders, `<root>/<folder id hex>`.

A host is a local directory (the installer's `vfolder_root`) or a shared filesystem (NFS and
the like) mounted at the same path on the control plane's machine and on every node, so that a
node can bind-mount a folder the API wrote into. Where the host's filesystem has project quotas
and the control plane may set them, each folder is a project whose size limit the kernel
enforces, for sessions writing into a mount too (`quota_mode` "project", controlplane/vfolders/
_quota.py). Elsewhere sizes are accounted by walking a folder, and the API refuses an upload that
would take a folder past its limit (`quota_mode` "accounted"); a session writing into a mount is
not limited then. The API's check applies in both modes.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from controlplane.errors import InvalidAPIParams, StorageHostUnusable
from controlplane.vfolders import _fs, _quota

log = logging.getLogger(__name__)
QUOTA_OPTIONS = {"prjquota", "pquota", "pqnoenforce"}


@dataclass
class StorageHost:
    name: str
    root: Path
    # why the kernel does not enforce folder sizes here ("" when it does); set by prepare()
    no_project_quota: str = "not prepared"

    def folder_path(self, folder_id: uuid.UUID) -> Path:
        return self.root / folder_id.hex

    @property
    def uploads(self) -> Path:
        """Partial uploads, outside every folder (sessions never see half a file)."""
        return self.root / ".uploads"

    def prepare(self) -> None:
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.uploads.mkdir(mode=0o700, exist_ok=True)
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.no_project_quota = _quota.probe(root_fd) or ""
        finally:
            os.close(root_fd)
        if self.project_quota_capable and self.no_project_quota:
            log.warning(
                "storage host %s: %s; sizes are accounted", self.name, self.no_project_quota
            )

    def make_folder(self, folder_id: uuid.UUID, uid: int, max_size: int | None) -> None:
        """The folder's directory, owned by the sessions' user so that they can write in it;
        with project quotas, a project limited to `max_size` bytes."""
        path = self.folder_path(folder_id)
        try:
            os.mkdir(path, 0o755)
            os.chown(path, uid, uid)
            if not self.no_project_quota:
                self._limit(folder_id, max_size, path)
        except OSError as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise StorageHostUnusable(
                f"cannot make a folder owned by uid {uid} in {self.root} ({exc.strerror}): the"
                " control plane must be able to write there and to chown (CAP_CHOWN)"
            ) from exc

    @contextmanager
    def _root_fd(self) -> Iterator[int]:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)

    def _limit(self, folder_id: uuid.UUID, max_size: int | None, path: Path | None) -> None:
        project = _quota.project_id(folder_id)
        with self._root_fd() as root_fd:
            if path is not None:
                dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    _quota.assign(dir_fd, project)
                finally:
                    os.close(dir_fd)
            _quota.set_limit(root_fd, project, max_size)

    def claim(self, fd: int, folder_id: uuid.UUID) -> None:
        """Charge the file open as `fd` (a partial upload, outside the folder) to the folder,
        so that the kernel holds it to the folder's limit and it can be renamed into it."""
        if not self.no_project_quota:
            _quota.assign(fd, _quota.project_id(folder_id))

    def usage(self, folder_id: uuid.UUID) -> tuple[int, int]:
        """(bytes, files) of a folder: with project quotas, what the kernel charges to it (the
        space its files take on disk, and its entries but itself); else the apparent sizes of
        its regular files, walked."""
        if self.no_project_quota:
            return _fs.usage(self.folder_path(folder_id))
        with self._root_fd() as root_fd:
            used, inodes = _quota.usage(root_fd, _quota.project_id(folder_id))
        return used, max(inodes - 1, 0)

    def project_limit(self, folder_id: uuid.UUID) -> int | None:
        """The limit the kernel holds the folder to, in bytes; None: none (or no quotas)."""
        if self.no_project_quota:
            return None
        with self._root_fd() as root_fd:
            return _quota.limit(root_fd, _quota.project_id(folder_id))

    def remove_folder(self, folder_id: uuid.UUID) -> None:
        shutil.rmtree(self.folder_path(folder_id), ignore_errors=True)  # never follows links
        if not self.no_project_quota:
            try:
                self._limit(folder_id, None, None)  # the project's limit goes with it
            except OSError as exc:
                log.warning("could not clear the quota of folder %s: %s", folder_id, exc)

    def capacity(self) -> tuple[int, int]:
        """(total bytes, used bytes) of the filesystem under the host."""
        info = os.statvfs(self.root)
        total = info.f_blocks * info.f_frsize
        return total, total - info.f_bfree * info.f_frsize

    @property
    def quota_mode(self) -> str:
        return "accounted" if self.no_project_quota else "project"

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
