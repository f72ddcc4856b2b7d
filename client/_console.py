"""What the CLI does on the terminal: stream a run's output, answer its input prompts, parse
KEY=VALUE options and print tables. Kept apart from the click wiring in `client.cli`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click
import trio

from client._output import read_answer, show_frame
from client.fastrun import parse_pair
from client.sdk import Client

BATCH_DEFAULTS = {"clean": "*", "build": "*", "buildLog": False}


def parse_pairs(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> dict[str, str]:
    """click callback for repeatable KEY=VALUE options (-r, -e)."""
    pairs: dict[str, str] = {}
    for item in values:
        pair = parse_pair(item, resource=param.name == "resources")
        if pair is None:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx, param)
        pairs[pair[0]] = pair[1]
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
            status = show_frame(frame)
            if status is not None:
                return status
    raise AssertionError("unreachable: the stream ends with a finished frame or an error")


async def _answer(frame: dict[str, Any]) -> str:
    # abandon_on_cancel: Ctrl-C must not wait for a line that never comes
    return await trio.to_thread.run_sync(read_answer, frame, abandon_on_cancel=True)


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
