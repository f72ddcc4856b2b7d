"""`python -m installer.tui [--demo]`: the text UI on its own, or walked through with the
doubles of `installer.tui.testing` (a made-up machine; nothing is installed)."""

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
        help="walk through the screens with a made-up machine and engine; installs nothing",
    )
    parser.add_argument(
        "--demo-fail-at",
        metavar="STEP",
        help="with --demo: make this step fail (e.g. services) to see the rollback",
    )
    args = parser.parse_args(argv)
    if args.demo_fail_at and not args.demo:
        parser.error("--demo-fail-at goes with --demo")
    if not args.demo:
        return run_tui()
    from installer.tui.testing import demo_app

    return run_tui(demo_app(fail_at=args.demo_fail_at))


if __name__ == "__main__":
    sys.exit(main())
