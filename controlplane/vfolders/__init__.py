"""Virtual folders: storage hosts, folders and their sharing, files through the API, mounts
into sessions (issue 13; docs/architecture.md "Virtual folders")."""

from controlplane.vfolders import _fs as fs
from controlplane.vfolders import _mounts as mounts
from controlplane.vfolders import _sharing as sharing
from controlplane.vfolders import _transfer as transfer
from controlplane.vfolders._folders import (
    PERMISSIONS,
    READY,
    TRASHED,
    Access,
    FolderLimits,
    accessible,
    create,
    find,
    folder_limits,
    get_trashed,
    purge,
    rename,
    restore,
    sessions_using,
    trash,
    trashed,
)
from controlplane.vfolders._hosts import Hosts, StorageHost
from controlplane.vfolders._mounts import MountRequest

__all__ = [
    "PERMISSIONS",
    "READY",
    "TRASHED",
    "Access",
    "FolderLimits",
    "Hosts",
    "MountRequest",
    "StorageHost",
    "accessible",
    "create",
    "find",
    "folder_limits",
    "fs",
    "get_trashed",
    "mounts",
    "purge",
    "rename",
    "restore",
    "sessions_using",
    "sharing",
    "transfer",
    "trash",
    "trashed",
]
