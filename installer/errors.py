"""The installer's errors: plain exceptions whose message says what went wrong and what to do."""

from __future__ import annotations


class InstallerError(Exception):
    """Base of the installer's errors."""


class PlanError(InstallerError):
    """The plan (answers file, or what the TUI collected) is not usable; names the bad key.

    Not a ValueError: pydantic would turn one raised by `Plan`'s own checks into a
    ValidationError."""


class StepError(InstallerError):
    """An install step could not do its work. `fix`, when known, says what would help."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


class CommandFailed(StepError):
    """A host command (systemctl, apt-get, the installed executable) exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, output: str, fix: str = "") -> None:
        tail = "\n".join(output.strip().splitlines()[-20:])
        message = f"`{' '.join(argv)}` exited with {returncode}"
        super().__init__(f"{message}:\n{tail}" if tail else message, fix)
        self.argv = argv
        self.returncode = returncode
        self.output = output
