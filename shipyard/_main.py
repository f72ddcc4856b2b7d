"""The `shipyard` executable's entry point: `shipyard run` and `shipyard --version` take a fast
path when they can.

Only the standard library is imported before that choice: the click command tree
(shipyard/cli.py) and everything behind it load only for what the fast paths do not do.
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:  # the line click's version_option (shipyard/cli.py) prints
        from hostlib import __version__

        print(f"shipyard, version {__version__}")
        return
    if argv[:1] == ["run"]:
        from client import fastrun

        status = fastrun.main(argv[1:])
        if status is not None:
            sys.exit(status)
    from shipyard.cli import main as commands

    commands()
