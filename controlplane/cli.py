"""`shipyard controlplane ...`"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import click

from controlplane.config import ControlPlaneConfig


@click.group()
def controlplane() -> None:
    """The control plane service (API, scheduler, database)."""


@controlplane.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="controlplane.toml",
)
def serve_command(config_path: Path) -> None:
    """Serve the API until SIGTERM or Ctrl-C."""
    try:
        config = ControlPlaneConfig.load(config_path)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise click.ClickException(f"cannot read {config_path}: {exc}") from exc
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from controlplane.server import serve

    try:
        anyio.run(serve, config, backend="asyncio")
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. the port is taken
        raise click.ClickException(str(exc)) from exc
