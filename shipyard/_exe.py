"""How to start this same program again as a child process (venv or packaged executable)."""

from __future__ import annotations

import sys


def shipyard_argv() -> list[str]:
    if getattr(sys, "frozen", False):  # PyInstaller one-file build: the executable is the CLI
        return [sys.executable]
    return [sys.executable, "-m", "shipyard"]
