"""The installer's text UI (Textual): `run_tui()` runs it; `InstallerApp` takes the engine's
functions as arguments, so tests and `--demo` run it against doubles."""

from installer.tui.app import InstallerApp, run_tui

__all__ = ["InstallerApp", "run_tui"]
