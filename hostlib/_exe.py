"""How to start this same program again as a child process (venv or packaged executable), and
how to start someone else's."""

from __future__ import annotations

import os
import sys


def shipyard_argv() -> list[str]:
    if getattr(sys, "frozen", False):  # PyInstaller one-file build: the executable is the CLI
        return [sys.executable]
    return [sys.executable, "-m", "shipyard"]


def host_environ() -> dict[str, str]:
    """The environment for host programs (ldd, dpkg, debootstrap).

    The one-file executable's bootloader prepends the unpacked bundle to LD_LIBRARY_PATH and
    keeps the caller's value in LD_LIBRARY_PATH_ORIG. Our own re-executions need that (they
    reuse the unpacked bundle and find its libraries only through it), but a host program must
    not see it: `ldd` would report the bundle's libz instead of the host's.
    """
    env = dict(os.environ)
    if getattr(sys, "frozen", False):
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is None:
            env.pop("LD_LIBRARY_PATH", None)
        else:
            env["LD_LIBRARY_PATH"] = original
    return env
