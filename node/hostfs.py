"""The node's files on the host: the runner copy, per-kernel directories, uploads into them.

All functions here are blocking; the agent calls them in worker threads. The node runs as root
while a kernel's work directory is writable by the kernel's user, so writes into it never follow
a symbolic link the kernel may have planted (a link to /etc would otherwise be written through).
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from node.errors import UploadRejected
from node.runner import RUNNER_PATH

RUNNER_DIR = "runner"  # <state>/runner/runner.py, mounted read-only at /opt/shipyard
KERNELS_DIR = "k"  # <state>/k/<12 hex>/{ipc,work}; short, because socket paths max out at 107 bytes


def install_runner(state_dir: Path) -> Path:
    """Copy the runner into the state directory (replacing an older copy); return its folder."""
    folder = state_dir / RUNNER_DIR
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    folder.chmod(0o755)
    target = folder / "runner.py"
    source = RUNNER_PATH.read_bytes()
    if not target.exists() or target.read_bytes() != source:
        # rename over the old file so a kernel starting right now never reads half of it
        tmp = folder / ".runner.py.tmp"
        tmp.write_bytes(source)
        tmp.chmod(0o644)
        tmp.replace(target)
    return folder


def make_kernel_dir(path: Path, uid: int) -> None:
    """Create a kernel's folder with `ipc` (0700) and `work` (0755), both owned by `uid`.

    FileExistsError if it is there already.
    """
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.mkdir(mode=0o755)
    try:
        for name, mode in (("ipc", 0o700), ("work", 0o755)):
            sub = path / name
            sub.mkdir(mode=mode)
            sub.chmod(mode)  # mkdir's mode is filtered by the umask
            os.chown(sub, uid, uid)
    except BaseException:
        remove_tree(path)
        raise


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


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
        finally:
            os.close(out)
    finally:
        os.close(fd)
