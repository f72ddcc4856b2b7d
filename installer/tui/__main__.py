"""`python -m installer.tui [--demo]`."""

import sys

from installer.tui.app import main

sys.exit(main())
