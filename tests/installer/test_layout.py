"""The `executable` step of the packaged program (installer/_layout.py), on stand-in programs
written with PyInstaller's own archive writer: the index it appends reads back with
PyInstaller's reader, and installs, upgrades, undo and uninstall leave the links and folders
they should. The real executable, started from its layout, is in tests/packaging."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from PyInstaller.archive.readers import CArchiveReader
from PyInstaller.archive.writers import CArchiveWriter

from hostlib import __version__
from installer._layout import (
    UnpackedExecutable,
    lay_out,
    one_file,
    one_folder_index,
    program_dir,
    read_archive,
    remove_program,
)
from installer._step import Run
from installer.errors import StepError
from installer.plan import Plan

BOOTLOADER = b"\x7fELF stand-in for the bootloader\n" * 100


def stand_in(folder: Path, modules: bytes) -> bytes:
    """A one-file program: a bootloader, then an archive with entries of every kind we see in
    dist/shipyard's (an option, the PYZ, a shared library and a data file to unpack)."""
    folder.mkdir(parents=True)
    (folder / "PYZ.pyz").write_bytes(modules)
    (folder / "libpython3.11.so.1.0").write_bytes(b"\x7fELF libpython")
    (folder / "base_library.zip").write_bytes(b"PK stdlib")
    entries = [
        ("pyi-contents-directory _internal", "", False, "o"),
        ("PYZ.pyz", str(folder / "PYZ.pyz"), False, "z"),
        ("libpython3.11.so.1.0", str(folder / "libpython3.11.so.1.0"), True, "b"),
        ("base_library.zip", str(folder / "base_library.zip"), True, "x"),
    ]
    CArchiveWriter(str(folder / "pkg"), entries, "libpython3.11.so.1.0")
    return BOOTLOADER + (folder / "pkg").read_bytes()


def unpacked(folder: Path) -> Path:
    """What the bootloader unpacks the stand-in into (sys._MEIPASS): mode 0700, as it makes it."""
    folder.mkdir(mode=0o700)
    (folder / "libpython3.11.so.1.0").write_bytes(b"\x7fELF libpython")
    (folder / "libpython3.11.so.1.0").chmod(0o700)
    (folder / "base_library.zip").write_bytes(b"PK stdlib")
    return folder


def test_the_index_reads_back_with_pyinstallers_reader(tmp_path: Path) -> None:
    program = stand_in(tmp_path / "build", b"modules")
    target = tmp_path / "lib" / "0.1.0-x"
    target.parent.mkdir()
    lay_out(program, unpacked(tmp_path / "mei"), target)

    installed = (target / "shipyard").read_bytes()
    assert installed.startswith(program) and one_file(installed) == program
    reader = CArchiveReader(str(target / "shipyard"))
    assert sorted(reader.toc) == ["PYZ.pyz"] and reader.options == [
        "pyi-contents-directory _internal"
    ]
    assert reader.extract("PYZ.pyz") == b"modules"  # the bytes inside the program, found
    archive = read_archive(installed)
    assert (archive.start, archive.unpacked, archive.contents) == (0, True, "_internal")
    assert read_archive(program).unpacked is False
    library = target / "_internal" / "libpython3.11.so.1.0"
    assert library.read_bytes() == b"\x7fELF libpython"
    assert (library.stat().st_mode & 0o777, (target / "_internal").stat().st_mode & 0o777) == (
        0o755,
        0o755,
    )  # the services' user reads what root's installer wrote from its 0700 folder


def test_an_archive_with_kinds_of_entries_not_known_here_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "splash").write_bytes(b"splash")
    CArchiveWriter(str(folder / "pkg"), [("splash", str(folder / "splash"), False, "l")], "lp")
    with pytest.raises(Exception, match=r"unknown kinds .*\['l'\]"):
        one_folder_index(BOOTLOADER + (folder / "pkg").read_bytes())


class VersionHost:
    """Answers the step's `executable --version`; nothing else is asked of it."""

    def __init__(self) -> None:
        self.version = "0.0.9"

    async def run(self, argv: Sequence[str], **_: Any) -> tuple[int, str]:
        assert argv[1:] == ["--version"], argv
        return 0, f"shipyard, version {self.version}\n"


def test_install_upgrade_undo_and_uninstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = Plan(role="all-in-one", executable=tmp_path / "bin" / "shipyard")
    root = program_dir(plan)
    assert root == tmp_path / "lib" / "shipyard"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(unpacked(tmp_path / "mei")), raising=False)
    host = VersionHost()
    logs: list[str] = []

    def install(build: int) -> UnpackedExecutable:
        program = tmp_path / f"dist{build}" / "shipyard"
        program.parent.mkdir()
        program.write_bytes(stand_in(tmp_path / f"work{build}", b"modules %d" % build))
        monkeypatch.setattr(sys, "executable", str(program))
        step = UnpackedExecutable(plan)
        step.run = Run(plan, host, lambda event: logs.append(str(event)))  # type: ignore[arg-type]
        if not trio.run(step.check):
            trio.run(step.apply)
        return step

    first = install(1)
    assert trio.run(first.check)
    build1 = first.build()
    assert plan.executable.readlink() == build1 / "shipyard"
    assert build1.name.startswith(f"{__version__}-")

    second = install(2)
    assert any(f"upgrading {plan.executable}: 0.0.9 -> {__version__}" in line for line in logs)
    build2 = second.build()
    assert plan.executable.readlink() == build2 / "shipyard"
    assert sorted(root.iterdir()) == sorted([build1, build2])  # the replaced one stays
    third = install(3)
    assert sorted(root.iterdir()) == sorted([build2, third.build()])  # older ones go

    trio.run(third.undo)
    assert plan.executable.readlink() == build2 / "shipyard"
    assert sorted(root.iterdir()) == [build2]

    # an installation of before this layout: the executable itself, restored by undo
    plan.executable.unlink()
    plan.executable.write_bytes(b"#!/bin/sh\n")
    fourth = install(4)
    assert plan.executable.is_symlink()
    trio.run(fourth.undo)
    assert plan.executable.read_bytes() == b"#!/bin/sh\n" and not plan.executable.is_symlink()

    host.version = "9.0"  # a newer one is installed: left alone
    with pytest.raises(StepError, match="newer than this installer"):
        install(5)
    assert plan.executable.read_bytes() == b"#!/bin/sh\n"

    lines = remove_program(plan)
    assert not plan.executable.exists() and not root.exists(), lines
