"""The node's files on the host: the runner copy, per-kernel directories, uploads into them.

All functions here are blocking; the agent calls them in worker threads. The node runs as root
while a kernel's work directory is writable by the kernel's user, so writes into it never follow
a symbolic link the kernel may have planted (a link to /etc would otherwise be written through).
Everything else of a kernel's directory belongs to root and is mounted read-only, if at all.

A kernel's work directory is its own ext4 filesystem in a preallocated image file of the quota's
size, loop-mounted by the node: a session that fills it gets ENOSPC there and cannot take space
from anyone else, and the node refuses a kernel whose image would leave less than the configured
reserve free on the state directory's filesystem.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import errno
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from node.errors import UploadRejected
from node.runner import RUNNER_FILES
from wire import format_bytes

RUNNER_DIR = "runner"  # <state>/runner/runner.py, mounted read-only at /opt/shipyard
KERNELS_DIR = "k"  # <state>/k/<12 hex>/...; short, because socket paths max out at 107 bytes
# in a kernel's folder, all root-owned but the work filesystem's root:
SOCKET_DIR = "sock"  # the node's listening socket `node.sock`; mounted read-only at /run/shipyard
SOCKET_NAME = "node.sock"
RELAY_SOCKET_NAME = "relay.sock"  # beside it: the runner dials it for relayed streams
WORK_DIR = "work"  # mount point of the work filesystem, mounted at /home/work
WORK_IMAGE = "work.img"  # that filesystem's image
PASSWD, GROUP = "passwd", "group"  # mounted read-only over /etc/passwd and /etc/group
MOUNTS_DIR = "mounts"  # <i>: a folder inside a virtual folder, bound here (node/vfolders.py)
TOOL_TIMEOUT = 60.0  # mkfs and mount take tens of milliseconds; this only catches a hung one
# the free-space check and the preallocation are one step: kernel folders are made concurrently
# (a burst of sessions must not wait for each mkfs and mount in turn), and two of them must not
# both take the last room above the reserve
_RESERVING = threading.Lock()


def install_runner(state_dir: Path) -> Path:
    """Copy the runner into the state directory (replacing an older copy); return its folder."""
    folder = state_dir / RUNNER_DIR
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    folder.chmod(0o755)
    for path in RUNNER_FILES:
        target = folder / path.name
        source = path.read_bytes()
        if not target.exists() or target.read_bytes() != source:
            # rename over the old file so a kernel starting right now never reads half of it
            tmp = folder / f".{path.name}.tmp"
            tmp.write_bytes(source)
            tmp.chmod(0o644)
            tmp.replace(target)
    return folder


def make_kernel_dir(path: Path, uid: int, *, work_quota: bool) -> None:
    """Create a kernel's folder: the socket folder, the passwd/group files its user sees, and
    the work folder: the mount point of `make_work_fs` with a quota, else a plain folder owned
    by `uid`, unlimited. FileExistsError if it is there already."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.mkdir(mode=0o755)
    try:
        path.chmod(0o755)  # mkdir's mode is filtered by the umask
        for name in (SOCKET_DIR, WORK_DIR):
            (path / name).mkdir(mode=0o755)
            (path / name).chmod(0o755)
        _write(path / PASSWD, _passwd(uid))
        _write(path / GROUP, f"root:x:0:\nnogroup:x:65534:\nwork:x:{uid}:\n")
        if not work_quota:
            os.chown(path / WORK_DIR, uid, uid)
    except BaseException:
        remove_kernel_dir(path)
        raise


def _passwd(uid: int) -> str:
    # the image's own accounts are replaced: with a read-only root only these three matter
    return (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"work:x:{uid}:{uid}:Shipyard user:/home/work:/bin/sh\n"
    )


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def make_work_fs(kdir: Path, uid: int, size: int, reserve: int) -> None:
    """Mount a `size` work filesystem whose root `uid` owns on the work folder of the kernel
    folder `kdir` (made by `make_kernel_dir`, which the caller removes if this fails). OSError
    (ENOSPC) when its image would leave less than `reserve` bytes free.

    Separate from the folder because it takes longer than the engine's create of the container,
    which needs only the folder to exist: the node does both at once (mounted before the start).
    """
    image = kdir / WORK_IMAGE
    with _RESERVING:
        free = shutil.disk_usage(kdir).free
        if free - size < reserve:
            raise OSError(
                28,
                f"a {format_bytes(size)} work directory would leave "
                f"{format_bytes(max(free - size, 0))} free on the node's disk, below its reserve "
                f"of {format_bytes(reserve)}",
            )
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)  # reserved now: the disk cannot be overcommitted
        finally:
            os.close(fd)
    # no journal: the work filesystem does not outlive its kernel, which a host crash ends too;
    # nodiscard keeps the preallocation (mkfs would otherwise punch the image's blocks out again)
    _tool("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
          "-E", f"root_owner={uid}:{uid},nodiscard", str(image))  # fmt: skip
    try:
        _tool("mount", "-o", "loop,nosuid,nodev", str(image), str(kdir / WORK_DIR))
    except OSError as exc:
        raise OSError(
            f"{exc}; a node that cannot mount filesystems the container engine sees (one inside a"
            " container or systemd-nspawn) needs work_quota = false in node.toml, and then has"
            " no work quota"
        ) from exc


def _tool(*argv: str) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise OSError(f"{argv[0]} failed: {exc.stderr.strip() or exc.returncode}") from exc
    except (subprocess.TimeoutExpired, FileNotFoundError) as exc:
        raise OSError(f"{argv[0]} failed: {exc}") from exc


_MS_BIND, _MNT_DETACH = 4096, 2
_libc = ctypes.CDLL(None, use_errno=True)


def bind_dir_fd(fd: int, target: Path) -> None:
    """Bind the directory open as `fd` on the empty directory `target`. The source is the
    descriptor's magic link, so what is bound is the directory held, whatever its path has
    become since it was opened."""
    if _libc.mount(f"/proc/self/fd/{fd}".encode(), bytes(target), None, _MS_BIND, None):
        code = ctypes.get_errno()
        raise OSError(code, f"cannot bind a folder on {target}: {os.strerror(code)}")


def _release_mounts(path: Path) -> None:
    """Detach the folders bound under `path/mounts` and remove their (then empty) mount points.
    rmdir, never rmtree: a bind that could not be detached must not have its files removed."""
    mounts = path / MOUNTS_DIR
    if not mounts.is_dir():
        return
    for point in mounts.iterdir():
        if _libc.umount2(bytes(point), _MNT_DETACH) and ctypes.get_errno() != errno.EINVAL:
            raise OSError(f"cannot unmount {point}: {os.strerror(ctypes.get_errno())}")
        point.rmdir()  # OSError while anything is still in it
    mounts.rmdir()


def remove_kernel_dir(path: Path) -> None:
    """Unmount the kernel's work filesystem (if mounted) and bound folders, and remove its
    folder."""
    _release_mounts(path)
    work = path / WORK_DIR
    if os.path.ismount(work):
        # lazy: detached at once even if something still holds it; the loop device goes with
        # the last user (mount set it to clear itself)
        subprocess.run(["umount", "--lazy", str(work)], check=False, capture_output=True)
    if os.path.ismount(work):
        raise OSError(f"cannot unmount {work}")  # rmtree would empty a live session's files
    remove_tree(path)


def remove_kernel_dirs(state_dir: Path) -> None:
    """Remove every kernel folder under a node's state directory (after its containers)."""
    for kdir in (state_dir / KERNELS_DIR).glob("*"):
        remove_kernel_dir(kdir)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: never follows a planted link


def check_upload(files: Sequence[tuple[str, str]]) -> list[tuple[PurePosixPath, bytes]]:
    """Validate every (relative path, base64 data) pair before anything is written."""
    checked = []
    for raw_path, data_b64 in files:
        path = PurePosixPath(raw_path)
        if not raw_path or "\0" in raw_path or path.is_absolute():
            raise UploadRejected(f"{raw_path!r}: upload paths must be relative to the work folder")
        if ".." in path.parts:
            raise UploadRejected(f"{raw_path!r}: upload paths must not contain '..'")
        if not path.parts or path.parts == (".",):
            raise UploadRejected(f"{raw_path!r}: an upload path must name a file")
        try:
            data = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UploadRejected(f"{raw_path!r}: the file data is not valid base64") from exc
        checked.append((path, data))
    return checked


def write_upload(work_dir: Path, path: PurePosixPath, data: bytes, uid: int) -> None:
    """Write one checked file under `work_dir`, creating parents; never through a symlink."""
    *parents, name = [p for p in path.parts if p != "."]
    fd = os.open(work_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parents:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                os.chown(part, uid, uid, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise UploadRejected(f"{path}: {part!r} is not a folder") from exc
            os.close(fd)
            fd = child
        # O_NONBLOCK: a FIFO planted under that name must not hang the node
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            out = os.open(name, flags, 0o644, dir_fd=fd)
        except OSError as exc:
            raise UploadRejected(f"{path}: cannot write it ({exc.strerror})") from exc
        try:
            if not stat.S_ISREG(os.fstat(out).st_mode):
                raise UploadRejected(f"{path}: exists and is not a regular file")
            os.ftruncate(out, 0)
            os.fchown(out, uid, uid)
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]
        except OSError as exc:  # ENOSPC: the kernel's work quota is full
            raise UploadRejected(f"{path}: cannot write it ({exc.strerror})") from exc
        finally:
            os.close(out)
    finally:
        os.close(fd)
