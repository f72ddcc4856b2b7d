"""What the CLI does on the terminal: stream a run's output, answer its input prompts, parse
KEY=VALUE options and print tables. Kept apart from the click wiring in `client.cli`."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click
import trio

from client.sdk import Client

BATCH_DEFAULTS = {"clean": "*", "build": "*", "buildLog": False}


def parse_pairs(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> dict[str, str]:
    """click callback for repeatable KEY=VALUE options (-r, -e)."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or (param.name == "resources" and not value):
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx, param)
        if param.name == "resources" and key == "mem" and value.isdigit():
            value += "m"  # as backend.ai's CLI does: a bare number means MiB
        pairs[key] = value
    return pairs


def execution(code: str | None, exec_cmd: str | None) -> tuple[str, str, dict[str, Any]]:
    """(mode, code, options) for -c CODE (query mode) or --exec CMD (batch mode); with neither,
    a batch run of the image's default command (e.g. `python main.py` when there is a main.py)."""
    if code is not None and exec_cmd is not None:
        raise click.UsageError("give -c CODE or --exec CMD, not both")
    if code is not None:
        return "query", code, {}
    return "batch", "", {**BATCH_DEFAULTS, "exec": "*" if exec_cmd is None else exec_cmd}


async def stream_run(
    api: Client, session_id: str, mode: str, code: str, options: Mapping[str, Any]
) -> int:
    """Execute in a session, writing its output to our stdout/stderr as it comes; the
    execution's exit code."""
    async with api.execute_stream(session_id, mode, code, options, on_input=_answer) as frames:
        async for frame in frames:
            _show(frame.get("console"))
            if frame.get("status") == "waiting-input" and not frame.get("console"):
                _show_prompt(frame.get("options"))
            for item in frame.get("files") or []:
                if isinstance(item, dict):
                    _write(sys.stderr, f"{item.get('name')}: {item.get('url')}\n")
            if frame.get("status") == "finished":
                exit_code = frame.get("exitCode")
                if not isinstance(exit_code, int):
                    return 0
                return 128 - exit_code if exit_code < 0 else exit_code  # -9 -> 137
    raise AssertionError("unreachable: the stream ends with a finished frame or an error")


def _show(console: Any) -> None:
    if not isinstance(console, list):
        return
    for item in console:
        if not isinstance(item, list | tuple) or len(item) != 2:
            continue
        kind, data = item
        if kind == "stdout":
            _write(sys.stdout, str(data))
        elif kind == "stderr":
            _write(sys.stderr, str(data))
        else:
            _write(sys.stderr, f"[{kind} output not shown in a terminal]\n")


def _show_prompt(options: Any) -> None:
    """Backend.AI kernels print input()'s prompt as stdout; ours may send it as an option."""
    prompt = options.get("prompt") if isinstance(options, dict) else None
    if isinstance(prompt, str) and prompt:
        _write(sys.stdout, prompt)


def _write(stream: Any, text: str) -> None:
    stream.write(text)
    stream.flush()


async def _answer(frame: dict[str, Any]) -> str:
    """The user's answer to a waiting-input frame: one line of stdin, or getpass for a
    password when stdin is a terminal."""
    options = frame.get("options")
    password = isinstance(options, dict) and bool(options.get("is_password"))

    def read() -> str:
        stdin = sys.stdin
        if stdin is None:
            return ""
        if password and stdin.isatty():
            import getpass

            return getpass.getpass("")
        return stdin.readline().removesuffix("\n").removesuffix("\r")

    # abandon_on_cancel: Ctrl-C must not wait for a line that never comes
    return await trio.to_thread.run_sync(read, abandon_on_cancel=True)


def print_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """Columns are (key, heading); values are printed as str, None as "-"."""
    cells = [[h for _, h in columns]]
    for row in rows:
        cells.append(["-" if row.get(k) is None else _cell(row.get(k)) for k, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def print_fields(fields: Iterable[tuple[str, Any]]) -> None:
    items = list(fields)
    width = max((len(k) for k, _ in items), default=0)
    for key, value in items:
        click.echo(f"{key + ':':<{width + 1}} {'-' if value in (None, '') else value}")
