"""The node reads a kernel's work directory without following anything the kernel planted
(node/workfiles.py): links, FIFOs, paths that leave the folder."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from node.workfiles import FileRejected, archive, list_folder


@pytest.fixture
def work(tmp_path: Path) -> Path:
    outside = tmp_path / "secret.txt"
    outside.write_text("host secret\n")
    work = tmp_path / "work"
    (work / "sub" / "deeper").mkdir(parents=True)
    (work / "x.py").write_text("print('x')\n")
    (work / "sub" / "a.txt").write_text("alpha\n")
    (work / "sub" / "deeper" / "b.txt").write_text("beta\n")
    os.symlink(outside, work / "leak")
    os.symlink(tmp_path, work / "sub" / "up")
    os.mkfifo(work / "sub" / "pipe")
    return work


def _members(data: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: (f.read() if (f := tar.extractfile(m)) is not None else None)
            for m in tar.getmembers()
        }


def test_listing_shows_links_as_links(work: Path) -> None:
    entries = {e.name: e for e in list_folder(work, "/home/work")}
    assert set(entries) == {"x.py", "sub", "leak"}
    assert entries["leak"].mode.startswith("l")
    assert entries["sub"].mode.startswith("d")
    assert entries["x.py"].size == len("print('x')\n")
    assert {e.name for e in list_folder(work, "sub")} == {"a.txt", "deeper", "up", "pipe"}


@pytest.mark.parametrize("path", ["leak", "sub/up", "sub/up/secret.txt", "../secret.txt", "/etc"])
def test_nothing_outside_is_listed_or_archived(work: Path, path: str) -> None:
    with pytest.raises(FileRejected):
        archive(work, path, 2**20)
    if path != "leak":
        with pytest.raises(FileRejected):
            list_folder(work, path)


def test_a_fifo_is_refused_without_blocking(work: Path) -> None:
    with pytest.raises(FileRejected, match="not a regular file"):
        archive(work, "sub/pipe", 2**20)


def test_archives_hold_a_file_or_a_tree_without_links(work: Path) -> None:
    assert _members(archive(work, "/home/work/x.py", 2**20)) == {"x.py": b"print('x')\n"}
    assert _members(archive(work, "sub", 2**20)) == {
        "sub": None,
        "sub/a.txt": b"alpha\n",
        "sub/deeper": None,
        "sub/deeper/b.txt": b"beta\n",
    }


def test_archives_over_the_limit_are_refused(work: Path) -> None:
    (work / "big.bin").write_bytes(b"\0" * 5000)
    with pytest.raises(FileRejected, match="download limit"):
        archive(work, "big.bin", 4096)
