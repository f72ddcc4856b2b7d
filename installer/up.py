"""`shipyard up`: a control plane and a node on this machine, as two supervised child processes.

One trio nursery owns both children. If either exits, the other is stopped and `up` exits
non-zero naming the one that died; SIGINT/SIGTERM stop the node, then the control plane, and
`up` exits 0. Sessions' containers outlive `up` on purpose: the node reconciles them on restart.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import trio

from controlplane.config import ControlPlaneConfig
from hostlib import ConfigError, shipyard_argv
from node.config import NETWORK_MODES, NodeConfig

T = TypeVar("T")
READY_TIMEOUT = 60.0
STOP_GRACE = 10.0
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, only called after


class UpError(Exception):
    """Something `up` cannot go on with; the message says what and where to look."""


@dataclasses.dataclass(frozen=True)
class Layout:
    state_dir: Path
    controlplane: ControlPlaneConfig
    node: NodeConfig

    @property
    def endpoint(self) -> str:
        return endpoint_for(self.controlplane.host, self.controlplane.port)

    def write(self) -> None:
        self.controlplane.dump(self.state_dir / "controlplane.toml")
        self.node.dump(self.state_dir / "node.toml")

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def client_env(self) -> Path:
        return self.state_dir / "client.env"


def endpoint_for(host: str, port: int) -> str:
    """The URL clients and the node dial for an API listening on host:port."""
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: dial loopback
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _first(*values: T | None) -> T:
    return next(v for v in values if v is not None)


def resolve_state(
    state_dir: Path,
    *,
    host: str | None = None,
    port: int | None = None,
    network: str | None = None,
    database_url: str | None = None,
    node_id: str | None = None,
    mock_devices: Path | None = None,
) -> Layout:
    """Create the state directory and settle both configs (`Layout.write` writes them). Options
    given now win; otherwise what the existing files say is kept, the node token included."""
    state_dir = state_dir.expanduser().absolute()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    cp_path, node_path = state_dir / "controlplane.toml", state_dir / "node.toml"
    old_cp = _load(ControlPlaneConfig.load, cp_path)
    old_node = _load(NodeConfig.load, node_path)
    cp_settings: dict[str, Any] = {
        "state_dir": state_dir,
        "node_token": old_cp.node_token if old_cp else secrets.token_urlsafe(32),
        "host": _first(host, old_cp.host if old_cp else None, "127.0.0.1"),
        "port": _first(port, old_cp.port if old_cp else None, 8081),
        "database_url": _first(database_url, old_cp.database_url if old_cp else None, ""),
    }
    # the file's other settings (TLS, heartbeat timeout...) are kept as they are
    cp = dataclasses.replace(old_cp, **cp_settings) if old_cp else ControlPlaneConfig(**cp_settings)
    settings: dict[str, Any] = {
        "state_dir": state_dir / "node",
        "controlplane_url": endpoint_for(cp.host, cp.port),
        "node_token": cp.node_token,
        "network_mode": _first(network, old_node.network_mode if old_node else None, "none"),
        "vfolder_roots": list(cp.effective_vfolder_hosts.values()),
    }
    if node_id is not None:
        settings["node_id"] = node_id
    if mock_devices is not None:  # fake GPUs for demos and tests (node/accelerators/mock.py)
        settings["accelerators"] = ["mock"]
        settings["mock_devices"] = mock_devices.expanduser().absolute()
    try:
        node = dataclasses.replace(old_node, **settings) if old_node else NodeConfig(**settings)
    except ValueError as exc:
        raise UpError(str(exc)) from exc
    return Layout(state_dir, cp, node)


def _load(loader: Callable[[Path], T], path: Path) -> T | None:
    if not path.exists():
        return None
    try:
        return loader(path)
    except ConfigError as exc:
        raise UpError(f"{exc}; fix or remove it") from None


def write_client_env(path: Path, endpoint: str, access_key: str, secret_key: str) -> None:
    """A shell snippet (mode 0600) that points both our client and backend.ai's at `endpoint`."""
    values = {"ENDPOINT": endpoint, "ACCESS_KEY": access_key, "SECRET_KEY": secret_key}
    lines = [
        f"export {prefix}_{name}={shlex.quote(value)}"
        for prefix in ("SHIPYARD", "BACKEND")
        for name, value in values.items()
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    tmp.chmod(0o600)  # O_CREAT's mode does not apply to a file left over from before
    tmp.replace(path)


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UpError(
                    f"port {port} on {host} is already in use (another `shipyard up`?);"
                    " stop it or choose another --port"
                ) from None
            raise UpError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM when `up` dies, even by kill -9.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A service child process with its output appended to a log file.

    Spawned with subprocess.Popen from trio's own (main) thread on purpose, not with
    trio.lowlevel.open_process: that forks from a worker thread, and PR_SET_PDEATHSIG fires
    when the *thread* that forked exits — trio retires idle workers after 10 s, which would
    SIGTERM the child 10 s after it started.
    """

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"--- shipyard up: starting {shlex.join(argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,  # Ctrl-C reaches `up` only; it stops them in order
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    async def wait(self) -> int:
        if self.popen.returncode is not None:
            return self.popen.returncode
        try:
            pidfd = os.pidfd_open(self.popen.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): a thread waits instead
            return await trio.to_thread.run_sync(self.popen.wait, abandon_on_cancel=True)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        return self.popen.wait()

    async def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM, `grace` seconds, then SIGKILL; shielded so that cancellation cannot leave
        the child behind."""
        with trio.CancelScope(shield=True):
            self.popen.terminate()  # does nothing if it has already been reaped
            with trio.move_on_after(grace):
                await self.wait()
            if self.popen.returncode is None:
                self.popen.kill()
                await self.wait()
        return int(self.popen.returncode)


async def supervise(layout: Layout) -> tuple[int, str]:
    """Run both services until one dies or a signal comes: (exit status, what happened)."""
    children: list[Child] = []
    outcome: list[tuple[int, str]] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as nursery:

                def finish(code: int, message: str) -> None:
                    if not outcome:  # the first reason to stop is the one reported
                        outcome.append((code, message))
                    nursery.cancel_scope.cancel()

                async def stop_on_signal() -> None:
                    async for signum in signals:
                        click.echo(f"shipyard: {signal.Signals(signum).name}, stopping")
                        finish(0, "stopped")

                async def watch(child: Child) -> None:
                    code = await child.wait()
                    finish(1, f"the {child.name} {_describe_exit(code)}; see {child.log}")

                def spawn(name: str, argv: list[str], log: Path) -> Child:
                    child = Child(name, argv, log)
                    children.append(child)
                    nursery.start_soon(watch, child)
                    return child

                nursery.start_soon(stop_on_signal)
                try:
                    await _start(layout, spawn)
                except (UpError, OSError) as exc:
                    finish(1, str(exc))
        finally:
            for child in reversed(children):  # the node first, then the control plane
                await child.stop()
    return outcome[0] if outcome else (1, "stopped")


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


async def _start(layout: Layout, spawn: Callable[[str, list[str], Path], Child]) -> None:
    logs, state = layout.logs_dir, layout.state_dir
    click.echo(f"shipyard: logs in {logs}")
    serve = [*shipyard_argv(), "controlplane", "serve", "--config"]
    spawn("control plane", [*serve, str(state / "controlplane.toml")], logs / "controlplane.log")
    health = f"{layout.endpoint}/health"
    async with httpx.AsyncClient(timeout=5.0) as http:
        await _wait_healthy(http, health, _answers, f"the control plane ({logs}/controlplane.log)")
        click.echo(f"shipyard: control plane at {layout.endpoint}")
        serve = [*shipyard_argv(), "node", "serve", "--config"]
        spawn("node", [*serve, str(state / "node.toml")], logs / "node.log")
        await _wait_healthy(http, health, _node_alive, f"the node ({logs}/node.log)")
    click.echo("shipyard: node connected")
    try:
        keypair = _read_admin_keypair(layout.controlplane.admin_keypair_file)
    except UpError as exc:  # the services work; only the shortcut for clients is missing
        click.echo(f"shipyard: warning: {exc}; {layout.client_env} not written", err=True)
    else:
        write_client_env(layout.client_env, layout.endpoint, *keypair)
        env = shlex.quote(str(layout.client_env))
        click.echo(f"shipyard: ready. Try:\n\n  . {env} && shipyard run -c 'print(6*7)'\n")
        click.echo(
            f"shipyard: web UI at {layout.endpoint}/ui/ (sign in with the access and secret"
            f" key in {layout.client_env})"
        )
    click.echo("shipyard: Ctrl-C stops both services (session containers are kept).")


def _answers(health: dict[str, Any]) -> bool:
    return True


def _node_alive(health: dict[str, Any]) -> bool:
    return int(health.get("nodesAlive", 0)) >= 1


async def _wait_healthy(
    http: httpx.AsyncClient, url: str, ready: Callable[[dict[str, Any]], bool], what: str
) -> None:
    with trio.move_on_after(READY_TIMEOUT):
        while True:
            try:
                response = await http.get(url)
                if response.status_code == 200 and ready(response.json()):
                    return
            except (httpx.TransportError, ValueError, TypeError, AttributeError):
                pass  # not listening yet, or not answering properly yet
            await trio.sleep(0.1)
    raise UpError(f"{what} was not ready within {READY_TIMEOUT:.0f} s")


def _read_admin_keypair(path: Path) -> tuple[str, str]:
    """(access key, secret key) from the file the control plane writes at its first start."""
    try:
        data = json.loads(path.read_text())
        return str(data["access_key"]), str(data["secret_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UpError(
            f"cannot read the admin keypair from {path} ({exc}); the control plane writes it"
            " when it creates the admin on its first start"
        ) from exc


@click.command()
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where configs, database, logs and client.env live"
    " [default: $XDG_DATA_HOME/shipyard or ~/.local/share/shipyard].",
)
@click.option("--host", default=None, help="Address the API listens on [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="[default: 8081]")
@click.option("--network", type=click.Choice(NETWORK_MODES), default=None, help="[default: none]")
@click.option("--database-url", default=None, metavar="DSN", help="[default: embedded SQLite]")
@click.option("--node-id", default=None, help="The node's name [default: i-<hostname>].")
@click.option(
    "--mock-devices",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Give the node the fake GPUs this TOML file lists (the mock accelerator plugin).",
)
def up(
    state_dir: Path | None,
    host: str | None,
    port: int | None,
    network: str | None,
    database_url: str | None,
    node_id: str | None,
    mock_devices: Path | None,
) -> None:
    """Run a control plane and a node here, in the foreground, until Ctrl-C."""
    from client.config import default_state_dir

    try:
        layout = resolve_state(
            state_dir or default_state_dir(),
            host=host,
            port=port,
            network=network,
            database_url=database_url,
            node_id=node_id,
            mock_devices=mock_devices,
        )
        check_port_free(layout.controlplane.host, layout.controlplane.port)
        layout.write()
    except (UpError, OSError) as exc:
        click.echo(f"shipyard: error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    code, message = trio.run(supervise, layout)
    if code:
        click.echo(f"shipyard: error: {message}", err=True)
    else:
        click.echo(f"shipyard: {message}")
    raise click.exceptions.Exit(code)
