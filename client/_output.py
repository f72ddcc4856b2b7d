"""A run's result chunks on our terminal: stdout, stderr, prompts and the exit status.

Standard library only: the fast `shipyard run` (client/fastrun.py) and the SDK's streaming path
(client/_console.py) both write through here, so they print alike.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # the fast `shipyard run` imports this: typing costs start-up time
if TYPE_CHECKING:
    from typing import Any


def show_frame(frame: dict[str, Any]) -> int | None:
    """Write one result chunk; the run's exit status once it is the finished one."""
    _show(frame.get("console"))
    if frame.get("status") == "waiting-input" and not frame.get("console"):
        _show_prompt(frame.get("options"))
    for item in frame.get("files") or []:
        if isinstance(item, dict):
            write(sys.stderr, f"{item.get('name')}: {item.get('url')}\n")
    if frame.get("status") != "finished":
        return None
    exit_code = frame.get("exitCode")
    if not isinstance(exit_code, int):
        return 0
    return 128 - exit_code if exit_code < 0 else exit_code  # -9 -> 137


def read_answer(frame: dict[str, Any]) -> str:
    """The user's answer to a waiting-input chunk: one line of stdin, or getpass for a
    password when stdin is a terminal."""
    options = frame.get("options")
    password = isinstance(options, dict) and bool(options.get("is_password"))
    stdin = sys.stdin
    if stdin is None:
        return ""
    if password and stdin.isatty():
        import getpass

        return getpass.getpass("")
    return stdin.readline().removesuffix("\n").removesuffix("\r")


def _show(console: Any) -> None:
    if not isinstance(console, list):
        return
    for item in console:
        if not isinstance(item, list | tuple) or len(item) != 2:
            continue
        kind, data = item
        if kind == "stdout":
            write(sys.stdout, str(data))
        elif kind == "stderr":
            write(sys.stderr, str(data))
        else:
            write(sys.stderr, f"[{kind} output not shown in a terminal]\n")


def _show_prompt(options: Any) -> None:
    """Backend.AI kernels print input()'s prompt as stdout; ours may send it as an option."""
    prompt = options.get("prompt") if isinstance(options, dict) else None
    if isinstance(prompt, str) and prompt:
        write(sys.stdout, prompt)


def write(stream: Any, text: str) -> None:
    stream.write(text)
    stream.flush()
