"""`shipyard ssh-key`: the SSH key pair the platform keeps for your keypair (§10.4)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from client._clibase import Command, Group, call


@click.group(cls=Group, invoke_without_command=True)
@click.pass_context
def ssh_key(ctx: click.Context) -> None:
    """Your SSH public key (without a subcommand), or generate/set the pair."""
    if ctx.invoked_subcommand is None:
        found = call(lambda api: api.request("GET", "/auth/ssh-keypair"))
        if found["ssh_public_key"] is None:
            raise click.ClickException("you have no SSH key pair yet: shipyard ssh-key generate")
        click.echo(found["ssh_public_key"], nl=False)


def write_private_key(path: Path, text: str) -> None:
    """A private key file only its owner can read (mode 600 from its creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


@ssh_key.command("generate", cls=Command)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the private key (mode 600).",
)
def generate(output: Path) -> None:
    """Make a new ed25519 pair (replacing yours), save its private key, print the public one."""
    made = call(lambda api: api.request("PATCH", "/auth/ssh-keypair"))
    write_private_key(output, made["ssh_private_key"])
    click.echo(made["ssh_public_key"], nl=False)


@ssh_key.command("set", cls=Command)
@click.argument("private_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def set_keys(private_key: Path, public_key: Path) -> None:
    """Use your own pair (an unencrypted OpenSSH private key and its public key)."""
    body = {"pubkey": public_key.read_text(), "privkey": private_key.read_text()}
    kept = call(lambda api: api.request("POST", "/auth/ssh-keypair", body=body))
    click.echo(kept["ssh_public_key"], nl=False)
