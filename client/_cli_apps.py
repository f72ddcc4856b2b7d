"""`shipyard session shell` and `shipyard app`: a session's terminal and its apps, reached through
the control plane's relay (docs/backendai-api.md §10): nothing in the container listens on a
host port, so a local port here is the only way in, and it exists only while the command runs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import click
import trio
import trio_websocket

from client._clibase import Command, call, until_interrupted
from client._console import print_table
from client.errors import ClientError
from client.sdk import Client

CHUNK = 256 * 1024


def _segment(ref: str) -> str:
    return quote(ref, safe="")


# --- the terminal -----------------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("ref", metavar="SESSION")
def shell(ref: str) -> None:
    """Open a terminal in SESSION; exits with the shell's status."""

    async def run(api: Client) -> int:
        rows, cols = _terminal_size()
        path = f"/stream/session/{_segment(ref)}/pty"
        async with api.websocket(path, {"rows": str(rows), "cols": str(cols)}) as ws:
            with _raw_terminal():
                return await _terminal(ws)

    raise click.exceptions.Exit(call(run))


def _terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdin.fileno())
    except OSError:
        return 24, 80
    return size.lines, size.columns


@contextlib.contextmanager
def _raw_terminal() -> Iterator[None]:
    """Keys go to the remote shell as typed (Ctrl-C included) while a local terminal is used."""
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _terminal(ws: trio_websocket.WebSocketConnection) -> int:
    status = 255
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keys, ws)
        nursery.start_soon(_resizes, ws)
        while True:
            try:
                message = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                reason = exc.reason
                if status == 255 and reason is not None and reason.reason:
                    raise ClientError(f"the terminal closed: {reason.reason}") from None
                break
            item = json.loads(message)
            if item.get("type") == "out":
                sys.stdout.buffer.write(base64.b64decode(item["data"]))
                sys.stdout.buffer.flush()
            elif item.get("type") == "exit":
                status = int(item["code"])
        nursery.cancel_scope.cancel()
    return status


async def _keys(ws: trio_websocket.WebSocketConnection) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        while data := await stdin.receive_some(CHUNK):
            await _send(ws, {"type": "stdin", "chars": base64.b64encode(data).decode()})
    # stdin ended (a pipe): end the shell's input as a terminal's Ctrl-D would
    await _send(ws, {"type": "stdin", "chars": base64.b64encode(b"\x04").decode()})


async def _resizes(ws: trio_websocket.WebSocketConnection) -> None:
    with trio.open_signal_receiver(signal.SIGWINCH) as signals:
        async for _ in signals:
            rows, cols = _terminal_size()
            await _send(ws, {"type": "resize", "rows": rows, "cols": cols})


async def _send(ws: trio_websocket.WebSocketConnection, item: dict[str, Any]) -> None:
    with contextlib.suppress(trio_websocket.ConnectionClosed):  # the reader says how it ended
        await ws.send_message(json.dumps(item))


# --- apps ---------------------------------------------------------------------------------------


def _bind(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r}: give HOST:PORT or PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command(cls=Command)
@click.argument("ref", metavar="SESSION")
@click.argument("app_name", metavar="APP", required=False)
@click.option(
    "-b",
    "--bind",
    default="127.0.0.1:0",
    show_default=True,
    metavar="[HOST:]PORT",
    help="Where to listen locally (port 0: any free port).",
)
@click.option(
    "--stdio",
    is_flag=True,
    help="Join APP to this command's stdin and stdout instead (an ssh ProxyCommand).",
)
@click.option(
    "--browser",
    is_flag=True,
    help="Print a link that opens APP in a browser through the control plane (good for a minute).",
)
def app(ref: str, app_name: str | None, bind: str, stdio: bool, browser: bool) -> None:
    """List SESSION's apps, or open APP on a local port until Ctrl-C."""
    host, port = _bind(bind)
    if (stdio or browser) and app_name is None:
        raise click.UsageError("--stdio and --browser need an APP")
    if stdio:
        raise click.exceptions.Exit(call(lambda api: _stdio(api, ref, app_name or "")))
    if browser:

        async def link(api: Client) -> int:
            path = f"/stream/session/{_segment(ref)}/apps/{quote(app_name or '', safe='')}/link"
            made = await api.request("POST", path)
            click.echo(api.config.endpoint.rstrip("/") + made["path"])
            return 0

        raise click.exceptions.Exit(call(link))

    async def list_apps(api: Client) -> int:
        found = await api.request("GET", f"/stream/session/{_segment(ref)}/apps")
        rows = [{**a, "ports": ",".join(map(str, a["ports"]))} for a in found]
        print_table(rows, [("name", "NAME"), ("protocol", "PROTOCOL"), ("ports", "PORTS")])
        return 0

    async def tunnel(api: Client) -> int:
        assert app_name is not None
        found = await api.request("GET", f"/stream/session/{_segment(ref)}/apps")
        wanted = next((a for a in found if a["name"] == app_name), None)
        if wanted is None:
            names = ", ".join(a["name"] for a in found) or "none"
            raise ClientError(f"session {ref} has no app {app_name!r} (it has: {names})")
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        # an http app's URL carries the session's app token (JupyterLab's login)
        template = wanted.get("url_template") or "tcp://{host}:{port}/"
        url = template.format(host=shown, port=bound[1])
        click.echo(f"{app_name} of session {ref}: {url}", err=False)
        click.echo("Press Ctrl-C to close it.", err=True)
        path = f"/stream/session/{_segment(ref)}/tcpproxy"

        async def serve() -> int:
            async def one(conn: trio.SocketStream) -> None:
                await _proxy(api, path, app_name, conn)

            await trio.serve_listeners(one, listeners)
            return 0

        return await until_interrupted(serve)

    raise click.exceptions.Exit(call(tunnel if app_name else list_apps))


async def _proxy(api: Client, path: str, app_name: str, conn: trio.SocketStream) -> None:
    """One local connection ⇄ one tcpproxy WebSocket."""
    async with conn:
        try:
            async with api.websocket(path, {"app": app_name}) as ws, trio.open_nursery() as n:

                async def up() -> None:
                    while data := await conn.receive_some(CHUNK):
                        await ws.send_message(data)
                    n.cancel_scope.cancel()

                n.start_soon(up)
                while True:
                    data = await ws.get_message()
                    if isinstance(data, bytes):
                        await conn.send_all(data)
        except (ClientError, trio_websocket.ConnectionClosed, trio.BrokenResourceError) as exc:
            if not isinstance(exc, trio_websocket.ConnectionClosed):
                click.echo(f"shipyard: a connection to {app_name} failed: {exc}", err=True)
        except BaseExceptionGroup as group:
            leaf = group.exceptions[0]
            if not isinstance(leaf, trio_websocket.ConnectionClosed | trio.BrokenResourceError):
                raise


async def _stdio(api: Client, ref: str, app_name: str) -> int:
    """This process's stdin and stdout ⇄ one tcpproxy WebSocket to the app, until either ends."""
    path = f"/stream/session/{_segment(ref)}/tcpproxy"
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    stdout = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
    async with (
        stdin,
        stdout,
        api.websocket(path, {"app": app_name}) as ws,
        trio.open_nursery() as nursery,
    ):

        async def up() -> None:
            while data := await stdin.receive_some(CHUNK):
                await ws.send_message(data)
            nursery.cancel_scope.cancel()

        nursery.start_soon(up)
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            while True:
                data = await ws.get_message()
                if isinstance(data, bytes):
                    await stdout.send_all(data)
        nursery.cancel_scope.cancel()
    return 0
