"""`shipyard ssh` and `shipyard scp`: OpenSSH's own client, logging in to a session's `sshd` app
with your platform-managed SSH key, its connection carried by the relay through a ProxyCommand
(`shipyard app SESSION sshd --stdio`). Nothing in the container listens on any port.

The key is fetched for each command into a private temporary folder and removed afterwards;
`shipyard ssh SESSION --config FILE` instead writes the key to FILE and prints a `Host` block,
so plain `ssh`, `scp` and `rsync` work with it. A kernel's host key is made at its first SSH
connection and lives only as long as the kernel, so host keys are not checked: the relay is
what is authenticated (your keypair signs the WebSocket) and it reaches only your own sessions.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from client._cli_sshkey import write_private_key
from client._clibase import Command, call
from client.errors import APIError, ClientError
from client.sdk import Client

APP = "sshd"
USER = "work"
_OPTIONS = {
    "StrictHostKeyChecking": "no",
    "UserKnownHostsFile": "/dev/null",
    "IdentitiesOnly": "yes",
    "LogLevel": "ERROR",
}


async def _private_key(api: Client) -> str:
    """Your private key; a new pair is made (and said so) when you have none."""
    try:
        found = await api.request("GET", "/auth/ssh-keypair/private-key")
    except APIError as exc:
        if exc.status != 404:
            raise
        click.echo("shipyard: you had no SSH key pair: made one (see shipyard ssh-key)", err=True)
        found = await api.request("PATCH", "/auth/ssh-keypair")
    return str(found["ssh_private_key"])


def _proxy_command(ref: str) -> str:
    """This program again, as ssh runs it (`%` is ssh's escape character)."""
    me = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "shipyard"]
    argv = [*me, "app", ref, APP, "--stdio"]
    return " ".join(shlex.quote(a) for a in argv).replace("%", "%%")


def _options(ref: str, key: Path) -> dict[str, str]:
    return {**_OPTIONS, "IdentityFile": str(key), "ProxyCommand": _proxy_command(ref)}


def _argv(tool: str, ref: str, key: Path) -> list[str]:
    found = shutil.which(tool)
    if found is None:
        raise ClientError(f"{tool} is not installed here (Debian: apt-get install openssh-client)")
    options = _options(ref, key)
    return [found, *(arg for name, value in options.items() for arg in ("-o", f"{name}={value}"))]


@contextlib.contextmanager
def _fetched_key() -> Iterator[Path]:
    text = call(_private_key)
    with tempfile.TemporaryDirectory(prefix="shipyard-ssh-") as folder:
        key = Path(folder) / "id"
        write_private_key(key, text)
        yield key


@click.command(cls=Command, context_settings={"ignore_unknown_options": True})
@click.argument("ref", metavar="SESSION")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--config",
    "config_key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write your private key to this file and print an ssh_config Host block; no login.",
)
def ssh(ref: str, command: tuple[str, ...], config_key: Path | None) -> None:
    """Log in to SESSION over SSH, or run COMMAND there (after --); exits with its status.

    COMMAND runs as given, each argument quoted for the session's shell (`-- python3 -c
    'print(6*7)'`); for shell syntax, run a shell: `-- sh -c 'echo $HOME'`.
    """
    if config_key is not None:
        write_private_key(config_key, call(_private_key))
        options = _options(ref, config_key.resolve())
        lines = [f"Host {ref}", f"    User {USER}", *(f"    {k} {v}" for k, v in options.items())]
        click.echo("\n".join(lines))
        return
    with _fetched_key() as key:
        argv = [*_argv("ssh", ref, key), f"{USER}@{ref}"]
        if command:
            # ssh hands the remote shell one string: quoting keeps each argument whole
            argv += ["--", shlex.join(command)]
        code = subprocess.call(argv)
    raise click.exceptions.Exit(code)


@click.command(cls=Command)
@click.argument("ref", metavar="SESSION")
@click.argument("paths", nargs=-1, required=True, metavar="SRC... DST")
@click.option("-r", "--recursive", is_flag=True, help="Copy folders.")
def scp(ref: str, paths: tuple[str, ...], recursive: bool) -> None:
    """Copy files to or from SESSION; write its paths as `:PATH` (relative to /home/work).

    shipyard scp s1 data.csv :inputs/   or   shipyard scp s1 :results.txt .
    """
    if len(paths) < 2:
        raise click.UsageError("give at least one SRC and a DST")
    if not any(p.startswith(":") for p in paths):
        raise click.UsageError("write the session's paths as :PATH (none was)")
    with _fetched_key() as key:
        remote = [f"{USER}@{ref}{p}" if p.startswith(":") else p for p in paths]
        argv = [*_argv("scp", ref, key), *(["-r"] if recursive else []), "--", *remote]
        code = subprocess.call(argv)
    raise click.exceptions.Exit(code)
