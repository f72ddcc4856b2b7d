"""The `shipyard` executable's entry point: `shipyard run` takes the fast path when it can.

Only the standard library is imported before that choice: the click command tree
(shipyard/cli.py) and everything behind it load only for what the fast path does not do.
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        from client import fastrun

        status = fastrun.main(argv[1:])
        if status is not None:
            sys.exit(status)
    from shipyard.cli import main as commands

    commands()
