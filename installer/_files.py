"""Writing files so that they can be put back: the base of the steps that write files."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from installer._step import Step
from installer.plan import Plan


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` in one rename (a running program keeps its old inode)."""
    tmp = path.with_name(f".{path.name}.shipyard-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # O_CREAT's mode does not apply to a leftover file, nor umask here
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_dirs(path: Path, mode: int) -> list[Path]:
    """mkdir -p; the directories it created, outermost first (for undo)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=mode)
        directory.chmod(mode)
    return list(reversed(missing))


def remove_tree(path: Path) -> str:
    """rm -rf that also copes with `path` being a mount point (it is emptied); what happened."""
    if not path.exists() and not path.is_symlink():
        return f"{path} is already gone"
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return f"removed {path}"
    busy: list[str] = []

    def on_error(func: Any, failed: str, info: Any) -> None:
        error = info[1]
        if Path(failed) == path and isinstance(error, OSError) and error.errno == errno.EBUSY:
            busy.append(failed)  # a mount point (a bind mount, say): emptied is all we can do
            return
        raise error

    shutil.rmtree(path, onerror=on_error)
    if busy:
        return f"emptied {path} (a mount point, so the directory itself stays)"
    return f"removed {path}"


@dataclass
class Saved:
    path: Path
    previous: bytes | None
    mode: int | None


class FilesStep(Step):
    """A step that writes some files. `check`: they already hold exactly that; `undo`: what was
    there before comes back (or they go, and the directories made for them)."""

    dir_mode = 0o755

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self._desired: dict[Path, tuple[bytes, int]] | None = None
        self._saved: list[Saved] = []
        self._made_dirs: list[Path] = []

    def files(self) -> dict[Path, tuple[bytes, int]]:
        """path -> (content, mode)."""
        raise NotImplementedError

    def desired(self) -> dict[Path, tuple[bytes, int]]:
        if self._desired is None:
            self._desired = self.files()
        return self._desired

    def same(self, current: bytes, wanted: bytes) -> bool:
        """Whether a file holding `current` already says what `wanted` says."""
        return current == wanted

    def _matches(self, path: Path, data: bytes, mode: int) -> bool:
        try:
            return (path.stat().st_mode & 0o7777) == mode and self.same(path.read_bytes(), data)
        except OSError:
            return False

    async def check(self) -> bool:
        def matches() -> bool:
            return all(self._matches(p, data, mode) for p, (data, mode) in self.desired().items())

        return await trio.to_thread.run_sync(matches)

    async def apply(self) -> None:
        for line in await trio.to_thread.run_sync(self._write_all):
            self.log(line)  # from trio's thread: on_event is not called from workers

    def _write_all(self) -> list[str]:
        lines = []
        for path, (data, mode) in self.desired().items():
            if self._matches(path, data, mode):
                continue
            self._made_dirs += make_dirs(path.parent, self.dir_mode)
            previous = path.read_bytes() if path.is_file() else None
            old_mode = path.stat().st_mode & 0o7777 if previous is not None else None
            self._saved.append(Saved(path, previous, old_mode))
            write_atomic(path, data, mode)
            lines.append(
                f"wrote {path}" + (" (replaced the old one)" if previous is not None else "")
            )
        return lines

    async def undo(self) -> None:
        for line in await trio.to_thread.run_sync(self._restore_all):
            self.log(line)

    def _restore_all(self) -> list[str]:
        lines = []
        for saved in reversed(self._saved):
            if saved.previous is None:
                saved.path.unlink(missing_ok=True)
                lines.append(f"removed {saved.path}")
            else:
                write_atomic(saved.path, saved.previous, saved.mode or 0o644)
                lines.append(f"put back the previous {saved.path}")
        self._saved.clear()
        for directory in reversed(self._made_dirs):
            try:
                directory.rmdir()
                lines.append(f"removed {directory}")
            except OSError:
                pass  # not empty: something else lives there now
        self._made_dirs.clear()
        return lines
