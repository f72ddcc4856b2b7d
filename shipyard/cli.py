"""The `shipyard` command line. Subcommands live with the package they belong to and are imported
only when used, so `shipyard run` does not pay for importing the control plane."""

from __future__ import annotations

import importlib

import click

from shipyard import __version__

# name -> "module:attribute" of a click command or group
_COMMANDS = {
    "run": "client.cli:run",
    "session": "client.cli:session",
    "admin": "client.cli:admin",
    "image": "client.cli:image",
    "up": "installer.up:up",
    "install": "installer.cli:install",
    "uninstall": "installer.cli:uninstall",
    "controlplane": "controlplane.cli:controlplane",
    "node": "node.cli:node",
}

# subcommands one package adds to another's group: group -> {name: "module:attribute"}
_SUBCOMMANDS = {
    "node": {"token": "installer.cli:token"},
}


def _load(target: str) -> click.Command:
    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command)
    return command


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        command = _load(target)
        extra = _SUBCOMMANDS.get(cmd_name, {})
        if extra and isinstance(command, click.Group):
            for name, sub in extra.items():
                if name not in command.commands:
                    command.add_command(_load(sub), name)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shipyard")
def main() -> None:
    """Shipyard: run code in isolated, resource-limited containers."""
