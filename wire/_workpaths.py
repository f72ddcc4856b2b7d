"""Paths a user names inside a session's work directory (`/home/work` in the container).

Both sides check them: the control plane to answer a bad path with a 400 before any node is
asked, the node because it trusts no one with the host's files. Whether a path exists, and
whether it crosses a link, only the node can tell (node/workfiles.py).
"""

from __future__ import annotations

from pathlib import PurePosixPath

WORK_ROOT = PurePosixPath("/home/work")


def work_path_parts(raw: str) -> list[str]:
    """The components of `raw` under the work directory ([] for the directory itself).

    `raw` is relative to it, or absolute inside it; ValueError says what is wrong otherwise.
    """
    if "\0" in raw:
        raise ValueError(f"{raw!r}: a path must not contain NUL")
    path = PurePosixPath(raw or ".")
    if path.is_absolute():
        if path != WORK_ROOT and WORK_ROOT not in path.parents:
            raise ValueError(f"{raw!r} is outside {WORK_ROOT}")
        path = path.relative_to(WORK_ROOT)
    parts = [part for part in path.parts if part != "."]
    if ".." in parts:
        raise ValueError(f"{raw!r}: paths must not contain '..'")
    return parts
