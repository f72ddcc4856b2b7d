"""The `shipyard` command line: the one registry of every command, wherever it lives.

Commands live with the package they belong to and are imported only when used, so `shipyard run`
does not pay for importing the control plane, and `shipyard image ls` not for the image builder.
Each entry names its command as "module:attribute" with the short help that listings show, so
`--help` imports nothing either. A group may get commands from another package (the installer's
`node token`, the image builder's `image build`): they are added when the group is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import click

from hostlib import __version__


@dataclass(frozen=True)
class Entry:
    target: str  # "module:attribute" of a click command or group
    short_help: str


COMMANDS: dict[str, Entry] = {
    "run": Entry("client.cli:run", "Run code in a fresh session, then remove it."),
    "session": Entry("client.cli:session", "Create, inspect, use and remove sessions."),
    "app": Entry("client._cli_apps:app", "List a session's apps, or open one on a local port."),
    "ssh-key": Entry("client._cli_sshkey:ssh_key", "Your SSH key pair kept by the platform."),
    "ssh": Entry("client._cli_ssh:ssh", "Log in to a session over SSH, through the relay."),
    "scp": Entry("client._cli_ssh:scp", "Copy files to or from a session over SSH."),
    "vfolder": Entry(
        "client._cli_vfolder:vfolder", "Virtual folders: data that outlives sessions."
    ),
    "image": Entry("client._cli_admin:image", "Kernel images and their aliases."),
    "admin": Entry("client._cli_admin:admin", "Administration (needs an admin keypair)."),
    "up": Entry("installer.up:up", "Run a control plane and a node here, in the foreground."),
    "install": Entry("installer.cli:install", "Install Shipyard on this machine under systemd."),
    "uninstall": Entry("installer.cli:uninstall", "Remove Shipyard from this machine."),
    "controlplane": Entry("controlplane.cli:controlplane", "The control plane service."),
    "node": Entry("node.cli:node", "The node agent: runs kernels for the control plane."),
}

# group -> commands that another package adds to it
SUBCOMMANDS: dict[str, dict[str, Entry]] = {
    "node": {"token": Entry("installer.cli:token", "Join tokens for nodes on other machines.")},
    "session": {"shell": Entry("client._cli_apps:shell", "Open a terminal in a session.")},
    "image": {
        "build": Entry(
            "kernelimages:build", "Build a kernel image from a recipe, no registry needed."
        )
    },
}


class Lazy(click.Command):
    """Stands in for a registered command until it is invoked (or its --help is asked for)."""

    def __init__(self, name: str, entry: Entry, extra: dict[str, Entry] | None = None) -> None:
        super().__init__(name, short_help=entry.short_help, add_help_option=False)
        self.entry = entry
        self.extra = extra or {}
        self._loaded: click.Command | None = None

    def load(self) -> click.Command:
        if self._loaded is None:
            module, _, attr = self.entry.target.partition(":")
            try:
                command = getattr(importlib.import_module(module), attr)
            except ImportError as exc:
                raise click.ClickException(f"'{self.name}' is not available here: {exc}") from exc
            assert isinstance(command, click.Command), self.entry.target
            if isinstance(command, click.Group):
                for name, entry in self.extra.items():
                    command.commands.setdefault(name, Lazy(name, entry))
            self._loaded = command
        return self._loaded

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        return self.load().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self.load().invoke(ctx)


@click.group(
    commands=[Lazy(name, entry, SUBCOMMANDS.get(name)) for name, entry in COMMANDS.items()],
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="shipyard")
def main() -> None:
    """Shipyard: run code in isolated, resource-limited containers."""
