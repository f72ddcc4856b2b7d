"""Filesystem project quotas (XFS `prjquota`/`pquota`, ext4 `prjquota`): each folder is a
project whose block limit the kernel enforces, for the API and for sessions writing into a
mount alike (ext4 says EDQUOT; XFS says ENOSPC for a project over its limit). Seen working under
Debian's kernel in a guest: tests/controlplane/test_vfolder_quotas.py.

A folder's directory gets a project id and the inherit flag (FS_IOC_FSSETXATTR), so everything
made in it later is counted in its project; the limit is set with quotactl_fd(2) (Linux 5.14) on
the host's root, which needs no block device path. Setting limits needs CAP_SYS_ADMIN: a control
plane without it (the systemd unit's sandbox) leaves its hosts in the "accounted" mode, and so
does a kernel built without quota support. `probe` tells which applies to a host.

The project id is derived from the folder's id (31 bits of it): ids are random, so two folders
on one host share a project only with a chance of about n²/2³² for n folders.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
import struct
import uuid

_SYS_QUOTACTL_FD = 443  # the same number on every architecture (the generic syscall table)
_PRJQUOTA = 2
_Q_GETQUOTA, _Q_SETQUOTA = 0x800007, 0x800008
_QIF_BLIMITS = 1
_BLOCK = 1024  # QIF_DQBLKSIZE: the unit of dqb_bhardlimit
# struct fsxattr: xflags, extsize, nextents, projid, cowextsize, 8 bytes of padding
_FSXATTR = struct.Struct("=IIIII8x")
_FS_IOC_FSGETXATTR, _FS_IOC_FSSETXATTR = 0x801C581F, 0x401C5820
_FS_XFLAG_PROJINHERIT = 0x200
_libc = ctypes.CDLL(None, use_errno=True)


class _Dqblk(ctypes.Structure):  # struct if_dqblk
    _fields_ = [
        ("bhardlimit", ctypes.c_uint64),
        ("bsoftlimit", ctypes.c_uint64),
        ("curspace", ctypes.c_uint64),
        ("ihardlimit", ctypes.c_uint64),
        ("isoftlimit", ctypes.c_uint64),
        ("curinodes", ctypes.c_uint64),
        ("btime", ctypes.c_uint64),
        ("itime", ctypes.c_uint64),
        ("valid", ctypes.c_uint32),
    ]


def project_id(folder_id: uuid.UUID) -> int:
    return folder_id.int % (2**31 - 1) + 1  # 0 is "no project"


def _quotactl(root_fd: int, command: int, project: int, block: _Dqblk) -> None:
    cmd = ctypes.c_uint((command << 8) | _PRJQUOTA)
    result = _libc.syscall(
        _SYS_QUOTACTL_FD, root_fd, cmd, ctypes.c_int(project), ctypes.byref(block)
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def probe(root_fd: int) -> str | None:
    """None when project quotas can be set on the filesystem of `root_fd`; else why not."""
    try:
        _quotactl(root_fd, _Q_GETQUOTA, 1, _Dqblk())
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return "setting quotas needs CAP_SYS_ADMIN, which the control plane lacks"
        if exc.errno in (errno.ENOSYS, errno.ESRCH, errno.ENOTTY, errno.EOPNOTSUPP):
            return "the filesystem is not mounted with project quotas (or the kernel lacks them)"
        if exc.errno != errno.ENOENT:  # ENOENT: no such project yet, yet quotas work
            return f"quotactl: {exc.strerror}"
    return None


def assign(fd: int, project: int) -> None:
    """Put the file or directory open as `fd` in `project`; a directory's contents inherit it.

    A file must be in a folder's project before it is renamed into the folder: XFS and ext4
    refuse a rename into a project directory from outside the project (EXDEV)."""
    buf = bytearray(_FSXATTR.size)
    fcntl.ioctl(fd, _FS_IOC_FSGETXATTR, buf)
    xflags, extsize, nextents, _, cowextsize = _FSXATTR.unpack(buf)
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        xflags |= _FS_XFLAG_PROJINHERIT
    packed = _FSXATTR.pack(xflags, extsize, nextents, project, cowextsize)
    fcntl.ioctl(fd, _FS_IOC_FSSETXATTR, packed)


def set_limit(root_fd: int, project: int, max_bytes: int | None) -> None:
    """The project's block limit (rounded up to KiB); None or 0: no limit."""
    block = _Dqblk()
    block.bhardlimit = block.bsoftlimit = -(-(max_bytes or 0) // _BLOCK)
    block.valid = _QIF_BLIMITS
    _quotactl(root_fd, _Q_SETQUOTA, project, block)


def _get(root_fd: int, project: int) -> _Dqblk:
    block = _Dqblk()
    with contextlib.suppress(FileNotFoundError):  # XFS: nothing charged to it, nor a limit
        _quotactl(root_fd, _Q_GETQUOTA, project, block)
    return block


def usage(root_fd: int, project: int) -> tuple[int, int]:
    """(bytes, inodes) charged to the project: what its files take on disk, whoever wrote them."""
    block = _get(root_fd, project)
    return block.curspace, block.curinodes


def limit(root_fd: int, project: int) -> int | None:
    """The project's block limit in bytes; None: none."""
    return _get(root_fd, project).bhardlimit * _BLOCK or None
