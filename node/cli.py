"""`shipyard node serve --config FILE`: run the node agent until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click
import trio

from hostlib import ConfigError
from node.agent import serve
from node.config import NodeConfig
from node.errors import NodeError


@click.group()
def node() -> None:
    """The node agent: runs kernels for the control plane."""


@node.command("serve")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="the node's TOML configuration, e.g. /etc/shipyard/node.toml",
)
def serve_command(config_path: Path) -> None:
    """Run the node agent in the foreground."""
    try:
        config = NodeConfig.load(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        trio.run(_run_until_signalled, config)
    except* NodeError as group:
        raise click.ClickException(str(group.exceptions[0])) from None


async def _run_until_signalled(config: NodeConfig) -> None:
    """Serve until SIGTERM/SIGINT, then cancel everything. Kernels keep running on purpose."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    logging.getLogger("shipyard.node").info(
                        "%s: shutting down (kernels keep running)", signal.Signals(signum).name
                    )
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            await serve(config)
