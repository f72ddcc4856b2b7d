"""`shipyard run` and `shipyard session ...` (`admin` and `image` are in `client._cli_admin`, so
that `shipyard run` imports no more than it needs).

Every error ends as one line on stderr, `shipyard: error: <message>`: exit status 1, or 2 for
usage errors as click has it. Never a traceback (SHIPYARD_DEBUG=1 shows one for a bug).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import trio

from client._clibase import Command, Group, call, leaf_error, until_interrupted
from client._console import execution, parse_pairs, print_fields, print_table, stream_run
from client._waiting import create_showing_why
from client.errors import APIError, ClientError, ConnectFailed
from client.sdk import Client
from wire import format_bytes

REMOVE_TIMEOUT = 30.0


def _resources_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-r",
        "--resource",
        "resources",
        multiple=True,
        metavar="KEY=VALUE",
        callback=parse_pairs,
        help="A resource slot, e.g. -r cpu=1 -r mem=256m (repeatable).",
    )(f)


def _environ_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-e",
        "--env",
        "environ",
        multiple=True,
        metavar="KEY=VALUE",
        callback=parse_pairs,
        help="An environment variable for the container (repeatable).",
    )(f)


def _max_wait_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--max-wait",
        type=click.FloatRange(min=0),
        default=0,
        metavar="SECONDS",
        help="Give up when the session has not started after this long (default: 0, no limit).",
    )(f)


def _mount_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-m",
        "--mount",
        "mounts",
        multiple=True,
        metavar="NAME[:PATH][:ro]",
        help="Mount a virtual folder (at /home/work/NAME unless PATH says; ro: read-only).",
    )(f)


def _depends_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--depends",
        "depends",
        multiple=True,
        metavar="SESSION",
        help="Start only after this session (id or name) succeeded; repeatable. If it does not"
        " succeed, this one is cancelled with the reason.",
    )(f)


def _code_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--exec",
        "exec_cmd",
        metavar="CMD",
        help="A shell command (batch mode). With neither option, the image's default batch"
        " command runs (the python image: python main.py, when there is a main.py).",
    )(f)
    return click.option("-c", "--code", help="Python code to run (query mode).")(f)


# --- shipyard run ------------------------------------------------------------------------------


@click.command(cls=Command)
@click.option("-i", "--image", default="python", show_default=True, help="Image or alias.")
@_code_options
@_resources_option
@_environ_option
@_max_wait_option
@_mount_option
@_depends_option
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def run(
    image: str,
    code: str | None,
    exec_cmd: str | None,
    resources: dict[str, str],
    environ: dict[str, str],
    max_wait: float,
    mounts: tuple[str, ...],
    depends: tuple[str, ...],
    files: tuple[Path, ...],
) -> None:
    """Run code in a fresh session, then remove it; exits with the code's exit status.

    FILES (relative to the current directory) are uploaded before running. While the session
    cannot be placed, why is shown on stderr.
    """
    mode, text, options = execution(code, exec_cmd)
    name = f"run-{secrets.token_hex(5)}"

    async def body(api: Client) -> int:
        try:
            async with trio.open_nursery() as nursery:
                # import the WebSocket code while the server starts the container
                nursery.start_soon(trio.to_thread.run_sync, _preload_stream)
                created = await create_showing_why(
                    api,
                    image,
                    name=name,
                    max_wait=max_wait,
                    resources=resources,
                    environ=environ,
                    mounts=mounts,
                    dependencies=depends,
                )
        except BaseException as exc:
            # it may exist even though no answer came, unless the request never left
            if not isinstance(leaf_error(exc), ConnectFailed):
                await _remove(api, name)
            raise
        try:
            session_id = str(created["sessionId"])
            status = created.get("status", "RUNNING")
            if status != "RUNNING":
                info = created.get("statusInfo") or await _status_info(api, session_id)
                if status == "TIMEOUT":
                    raise ClientError(f"session {name} did not start within {max_wait:g} s: {info}")
                raise ClientError(f"session {name} is {status}" + (f": {info}" if info else ""))
            if files:
                await api.upload(session_id, files, Path.cwd())
            return await stream_run(api, session_id, mode, text, options)
        finally:
            await _remove(api, name)

    raise click.exceptions.Exit(call(lambda api: until_interrupted(lambda: body(api))))


def _preload_stream() -> None:
    from client import _stream  # noqa: F401


async def _status_info(api: Client, session_id: str) -> str:
    try:
        return str((await api.get_session(session_id)).get("statusInfo") or "")
    except ClientError:
        return ""


async def _remove(api: Client, ref: str) -> None:
    """Remove a temporary session, also while being cancelled (Ctrl-C)."""
    problem: ClientError | None = None
    with trio.move_on_after(REMOVE_TIMEOUT, shield=True) as scope:
        try:
            await api.destroy_session(ref)
        except APIError as exc:
            if exc.status != 404:  # 404: it was never created
                problem = exc
        except ClientError as exc:
            problem = exc
    if scope.cancelled_caught:
        problem = ClientError(f"no answer within {REMOVE_TIMEOUT:.0f} s")
    if problem is not None:
        click.echo(f"shipyard: warning: could not remove session {ref}: {problem}", err=True)


# --- shipyard session ... -------------------------------------------------------------------


@click.group(cls=Group)
def session() -> None:
    """Create, inspect, use and remove sessions."""


@session.command("create")
@click.option("-i", "--image", default="python", show_default=True, help="Image or alias.")
@click.option("-n", "--name", default=None, help="Session name (default: generated).")
@_resources_option
@_environ_option
@click.option("--enqueue-only", is_flag=True, help="Return at once, without waiting to start.")
@_max_wait_option
@_mount_option
@click.option("-g", "--group", default="default", show_default=True, help="Project, by name.")
@click.option(
    "-s",
    "--scaling-group",
    default=None,
    help="Node pool (default: the first the project may use).",
)
@click.option(
    "--type",
    "session_type",
    type=click.Choice(["interactive", "batch"]),
    default="interactive",
    show_default=True,
    help="A batch session runs its --startup-command once and ends with its result.",
)
@click.option("-c", "--startup-command", default=None, help="The batch session's command.")
@_depends_option
@click.option(
    "--starts-at",
    default=None,
    metavar="TIME",
    help="Batch only: start not before TIME (ISO 8601, or a delay such as 30m, 1h, 1d1hr).",
)
def session_create(
    image: str,
    name: str | None,
    resources: dict[str, str],
    environ: dict[str, str],
    enqueue_only: bool,
    max_wait: float,
    mounts: tuple[str, ...],
    group: str,
    scaling_group: str | None,
    session_type: str,
    startup_command: str | None,
    depends: tuple[str, ...],
    starts_at: str | None,
) -> None:
    """Create a session and wait until it runs (unless --enqueue-only, or --max-wait passes:
    then it stays queued, with status TIMEOUT shown)."""
    created = call(
        lambda api: api.create_session(
            image,
            name=name,
            type=session_type,
            resources=resources,
            environ=environ,
            enqueue_only=enqueue_only,
            max_wait=max_wait,
            mounts=mounts,
            group=group,
            scaling_group=scaling_group,
            startup_command=startup_command,
            dependencies=depends,
            starts_at=starts_at,
        )
    )
    fields = [
        ("id", created.get("sessionId")),
        ("name", created.get("sessionName")),
        ("status", created.get("status")),
    ]
    if created.get("statusInfo"):
        fields.append(("info", created["statusInfo"]))
    print_fields(fields)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")


@session.command("ls")
@click.option("--all", "all_", is_flag=True, help="Include terminated sessions.")
@_json_option
def session_ls(all_: bool, as_json: bool) -> None:
    """List your sessions (active ones unless --all)."""
    items = call(lambda api: api.list_sessions(all=all_))
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    columns = [
        ("sessionId", "ID"),
        ("sessionName", "NAME"),
        ("status", "STATUS"),
        ("image", "IMAGE"),
        ("creationTime", "CREATED"),
    ]
    print_table(items, columns)


@session.command("info")
@click.argument("ref")
@click.option("-s", "--stats", is_flag=True, help="Also show its latest resource statistics.")
@_json_option
def session_info(ref: str, stats: bool, as_json: bool) -> None:
    """Show a session (by name or id), with its status history."""
    info = call(lambda api: api.get_session(ref))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    history = info.pop("statusHistory", None) or []
    last_stat = info.pop("lastStat", None)
    print_fields((key, _flat(value)) for key, value in info.items())
    if history:
        click.echo("statusHistory:")
        for entry in history:
            reason = f"  ({entry.get('reason')})" if entry.get("reason") else ""
            click.echo(f"  {entry.get('at')}  {entry.get('status')}{reason}")
    if stats:
        _print_stats(last_stat)


def _print_stats(last_stat: dict[str, Any] | None) -> None:
    if not last_stat:
        click.echo("stats: none yet (the node sends them with its next heartbeat)")
        return
    click.echo("stats:")
    rows = []
    for metric, value in last_stat.items():
        current, capacity = value.get("current", "-"), value.get("capacity")
        if value.get("unit_hint") == "bytes":
            current = format_bytes(int(Decimal(current)))
            capacity = format_bytes(int(Decimal(capacity))) if capacity else None
        elif value.get("unit_hint") == "percent":
            current = f"{current} %"
        pct = f"  ({value['pct']} % of {capacity})" if capacity and "pct" in value else ""
        rows.append((metric, f"{current}{pct}"))
    width = max(len(m) for m, _ in rows)
    for metric, text in rows:
        click.echo(f"  {metric + ':':<{width + 1}} {text}")


def _flat(value: Any) -> Any:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return value


@session.command("logs")
@click.argument("ref")
def session_logs(ref: str) -> None:
    """Print the container's own output (stdout/stderr)."""
    click.echo(call(lambda api: api.logs(ref)), nl=False)


@session.command("exec")
@click.argument("ref")
@_code_options
def session_exec(ref: str, code: str | None, exec_cmd: str | None) -> None:
    """Run code in an existing session; exits with the code's exit status."""
    mode, text, options = execution(code, exec_cmd)

    async def body(api: Client) -> int:
        session_id = ref if _is_uuid(ref) else str((await api.get_session(ref))["sessionId"])
        return await until_interrupted(lambda: stream_run(api, session_id, mode, text, options))

    raise click.exceptions.Exit(call(body))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@session.command("rm")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("-f", "--forced", is_flag=True, help="Remove even if its node is unreachable.")
def session_rm(refs: tuple[str, ...], forced: bool) -> None:
    """Terminate and remove sessions (by name or id)."""

    async def body(api: Client) -> int:
        failed = 0
        for ref in refs:
            try:
                await api.destroy_session(ref, forced=forced)
            except APIError as exc:
                failed += 1
                click.echo(f"shipyard: error: {ref}: {exc}", err=True)
            else:
                click.echo(f"removed {ref}")
        return 1 if failed else 0

    raise click.exceptions.Exit(call(body))
