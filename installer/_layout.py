"""The packaged executable installed once, unpacked, so that it starts as fast as a virtualenv.

`dist/shipyard` is a PyInstaller one-file program: its bootloader is followed by an archive
(PyInstaller's "PKG", format in PyInstaller/archive/readers.py) whose entries either run from
inside the file (the modules' PYZ, the bootstrap scripts, runtime options) or are unpacked into
a fresh `_MEIxxxxxx` folder at every start (shared libraries, data files: 0.2 to 0.3 s). An
archive with nothing to unpack is a one-folder program: the bootloader then takes those files
from beside the executable and runs Python in one process.

So the installer writes `<prefix>/lib/shipyard/<version>-<digest>/` once per build:

    shipyard     the executable's own bytes, followed by a second, small index that lists only
                 the entries run from inside the file (at their offsets in it); the bootloader
                 reads the last index in the file, scanning for its cookie from the end
    _internal/   a copy of the folder this running executable was unpacked into (sys._MEIPASS)

and makes `<prefix>/bin/shipyard` (plan.executable) a symbolic link to it: the bootloader
resolves its own path through /proc/self/exe, so it finds the folder beside the real file.
PyInstaller's `_PYI_APPLICATION_HOME_DIR` is no way around the unpacking: since its
security fix (GHSA-9fxf-4qw3-ghmr) the bootloader accepts that folder only from a running
one-file parent of the same executable.
"""

from __future__ import annotations

import atexit
import hashlib
import re
import shutil
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import trio

from hostlib import __version__
from installer._files import make_dirs, remove_tree, write_atomic
from installer._step import Step
from installer.errors import StepError
from installer.plan import Plan

MAGIC = b"MEI\014\013\012\013\016"
COOKIE = struct.Struct("!8sIIII64s")  # magic, length, TOC offset, TOC length, Python, libpython
ENTRY = struct.Struct("!IIIIBc")  # entry length, offset, stored, size, compressed, kind; name
RUN_IN_PLACE = frozenset("osmMz")  # options, scripts, bootstrap modules, the PYZ
UNPACKED = frozenset("bxnd")  # binaries, data files, symbolic links, dependencies
CONTENTS_OPTION = "pyi-contents-directory "
NAME = "shipyard"


class LayoutError(Exception):
    pass


@dataclass(frozen=True)
class Entry:
    offset: int  # from the start of the file
    stored: int
    size: int
    compressed: int
    kind: str
    name: str


@dataclass(frozen=True)
class Archive:
    start: int  # where the archive begins in the file
    toc: int  # where its index begins
    entries: tuple[Entry, ...]
    python: int
    libpython: bytes

    @property
    def unpacked(self) -> bool:
        """The bootloader finds the files beside the executable (nothing to unpack)."""
        return not any(entry.kind in UNPACKED for entry in self.entries)

    @property
    def contents(self) -> str:
        """The folder beside the executable that holds the unpacked files ("" = that one)."""
        options = [e.name for e in self.entries if e.kind == "o"]
        found = [o.removeprefix(CONTENTS_OPTION) for o in options if o.startswith(CONTENTS_OPTION)]
        return found[-1] if found else ""


def read_archive(program: bytes) -> Archive:
    """The last archive in `program`, the one the bootloader uses."""
    at = program.rfind(MAGIC)
    if at < 0 or at + COOKIE.size > len(program):
        raise LayoutError("not a PyInstaller executable: no archive in it")
    _, length, toc_offset, toc_length, python, libpython = COOKIE.unpack_from(program, at)
    start = at + COOKIE.size - length
    entries = []
    position, end = start + toc_offset, start + toc_offset + toc_length
    while position < end:
        size, offset, stored, unpacked, compressed, kind = ENTRY.unpack_from(program, position)
        name = program[position + ENTRY.size : position + size].rstrip(b"\0").decode()
        entries.append(Entry(start + offset, stored, unpacked, compressed, kind.decode(), name))
        position += size
    return Archive(start, start + toc_offset, tuple(entries), python, libpython)


def one_file(program: bytes) -> bytes:
    """The one-file program: `program` itself, or what it was before lay_out added its index."""
    archive = read_archive(program)
    if archive.start == 0 and archive.unpacked:  # our index: it spans the whole file
        return program[: archive.toc]
    return program


def one_folder_index(program: bytes) -> bytes:
    """What to append to the one-file `program` to make it a one-folder program."""
    archive = read_archive(program)
    unknown = {entry.kind for entry in archive.entries} - RUN_IN_PLACE - UNPACKED
    if unknown:  # a PyInstaller this was not written for: better no install than a broken one
        raise LayoutError(f"unknown kinds of PyInstaller archive entries: {sorted(unknown)}")
    toc = b"".join(_toc_entry(entry) for entry in archive.entries if entry.kind in RUN_IN_PLACE)
    length = len(program) + len(toc) + COOKIE.size
    cookie = COOKIE.pack(MAGIC, length, len(program), len(toc), archive.python, archive.libpython)
    return toc + cookie


def _toc_entry(entry: Entry) -> bytes:
    name = entry.name.encode() + b"\0"
    name += b"\0" * (-(ENTRY.size + len(name)) % 16)  # entries are 16-byte aligned
    kind = entry.kind.encode()
    size = ENTRY.size + len(name)
    return ENTRY.pack(size, entry.offset, entry.stored, entry.size, entry.compressed, kind) + name


def lay_out(program: bytes, unpacked: Path, target: Path) -> None:
    """Write the one-folder program for the one-file `program`, whose files were unpacked into
    `unpacked`, as the folder `target` (complete or absent: written beside it, then renamed)."""
    contents = read_archive(program).contents
    index = one_folder_index(program)
    partial = target.with_name(f".{target.name}.partial")
    remove_tree(partial)
    partial.mkdir(mode=0o755)
    shutil.copytree(unpacked, partial / contents, symlinks=True, dirs_exist_ok=True)
    _readable(partial)  # the bootloader made its folder 0700; the services' user reads it too
    with (partial / NAME).open("xb") as out:
        out.write(program)
        out.write(index)
    (partial / NAME).chmod(0o755)
    partial.rename(target)


def _readable(top: Path) -> None:
    for path in [top, *top.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        executable = stat.S_ISDIR(mode) or mode & stat.S_IXUSR
        path.chmod(0o755 if executable else 0o644)


def program_dir(plan: Plan) -> Path:
    """Where the installed builds live: lib/shipyard beside the executable's bin folder."""
    return plan.executable.parent.parent / "lib" / NAME


def running_from(folder: Path) -> bool:
    return getattr(sys, "frozen", False) and Path(sys.executable).is_relative_to(folder)


@dataclass
class Previous:
    link: str | None  # where plan.executable pointed
    data: bytes | None  # or what it held (an executable of before this layout, a wrapper)
    mode: int


class UnpackedExecutable(Step):
    """plan.executable: a link to this build laid out unpacked (the packaged executable)."""

    name = "executable"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.root = program_dir(plan)
        self.title = f"Install the executable as {plan.executable}, unpacked in {self.root}"
        self._program: bytes | None = None
        self._previous: Previous | None = None
        self._made: list[Path] = []

    def program(self) -> bytes:
        if self._program is None:
            self._program = one_file(Path(sys.executable).read_bytes())
        return self._program

    def build(self) -> Path:
        digest = hashlib.sha256(self.program()).hexdigest()[:12]
        return self.root / f"{__version__}-{digest}"

    async def check(self) -> bool:
        def linked() -> bool:
            link, build = self.plan.executable, self.build()
            return link.is_symlink() and link.readlink() == build / NAME and build.is_dir()

        return await trio.to_thread.run_sync(linked)

    async def apply(self) -> None:
        await refuse_downgrade(self)
        try:
            lines = await trio.to_thread.run_sync(self._apply)
        except (LayoutError, OSError) as exc:
            raise StepError(f"could not install the executable: {exc}") from exc
        for line in lines:
            self.log(line)

    def _apply(self) -> list[str]:
        lines = []
        link, build = self.plan.executable, self.build()
        if not build.is_dir():
            self._made += make_dirs(self.root, 0o755)
            lay_out(self.program(), Path(getattr(sys, "_MEIPASS", "")), build)
            self._made.append(build)
            lines.append(f"laid out {build}")
        self._made += make_dirs(link.parent, 0o755)
        self._previous = _current(link)
        tmp = link.with_name(f".{link.name}.shipyard-tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(build / NAME)
        tmp.replace(link)  # in one rename: a command starting now finds the old or the new
        lines.append(f"{link} -> {build / NAME}")
        # the build replaced stays until the next install: running services still use it
        keep = {build, Path(self._previous.link).parent if self._previous.link else build}
        for old in sorted(self.root.iterdir()):
            if old not in keep and not old.name.startswith(".") and not running_from(old):
                lines.append(remove_tree(old))
        return lines

    async def undo(self) -> None:
        def restore() -> list[str]:
            lines = []
            link, previous = self.plan.executable, self._previous
            if previous is not None:
                if previous.link is not None:
                    tmp = link.with_name(f".{link.name}.shipyard-tmp")
                    tmp.unlink(missing_ok=True)
                    tmp.symlink_to(previous.link)
                    tmp.replace(link)
                elif previous.data is not None:
                    write_atomic(link, previous.data, previous.mode)
                else:
                    link.unlink(missing_ok=True)
                lines.append(f"put back {link} as it was")
            for path in reversed(self._made):
                lines.append(remove_tree(path))
            self._previous, self._made = None, []
            return lines

        for line in await trio.to_thread.run_sync(restore):
            self.log(line)


def _current(link: Path) -> Previous:
    if link.is_symlink():
        return Previous(str(link.readlink()), None, 0)
    if link.is_file():
        return Previous(None, link.read_bytes(), link.stat().st_mode & 0o7777)
    return Previous(None, None, 0)


async def refuse_downgrade(step: Step) -> None:
    """Log what is replaced; a StepError when the installed executable is newer than this."""
    target = step.plan.executable
    if not target.exists():
        return
    code, output = await step.host.run([str(target), "--version"], time_limit=60, check=False)
    installed = output.strip().rsplit(" ", 1)[-1] if code == 0 else "unknown"
    if code == 0 and _version_key(installed) > _version_key(__version__):
        raise StepError(
            f"{target} is version {installed}, newer than this installer ({__version__})",
            f"run `{target} install` instead, or `shipyard uninstall` first",
        )
    step.run.facts["upgraded_from"] = installed
    verb = "upgrading" if installed != __version__ else "replacing (same version)"
    step.log(f"{verb} {target}: {installed} -> {__version__}")


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:4])


def remove_program(plan: Plan) -> list[str]:
    """Uninstall: plan.executable and every build. The build this program runs from goes when it
    exits (its modules are read from its file as they are imported)."""
    lines = []
    link, root = plan.executable, program_dir(plan)
    if link.is_symlink() or link.exists():
        link.unlink()
        lines.append(f"removed {link}")
    if root.is_dir():
        if running_from(root):
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            lines.append(f"{root} goes when this program exits (it runs from there)")
        else:
            lines.append(remove_tree(root))
    return lines
