"""`python -m installer.tui [--demo]`: the text UI on its own, or on a made-up machine with the
real engine installing into the sandbox of `installer.tui.testing` (/tmp/shipyard-tui; the
services it starts stop when the install is over, and the sandbox is removed on exit)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from installer.tui.app import run_tui


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m installer.tui",
        description="The installer's text UI (the real one is `shipyard install`).",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="walk through the screens on a made-up machine, installing into a sandbox",
    )
    parser.add_argument(
        "--demo-fail",
        action="store_true",
        help="with --demo: the services fail to start, to see the rollback",
    )
    args = parser.parse_args(argv)
    if args.demo_fail and not args.demo:
        parser.error("--demo-fail goes with --demo")
    if not args.demo:
        return run_tui()
    from installer.tui.testing import demo_app

    app, sandbox = demo_app(fail=args.demo_fail)
    with sandbox.opened():
        return run_tui(app)


if __name__ == "__main__":
    sys.exit(main())
