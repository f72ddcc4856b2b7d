"""`shipyard controlplane ...`"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio
import click
from sqlalchemy.exc import SQLAlchemyError

from controlplane.config import ControlPlaneConfig
from controlplane.secretbox import SecretBoxError
from hostlib import ConfigError


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
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from controlplane.server import serve

    os.umask(0o077)  # everything the control plane writes is its own: database, keys
    try:
        anyio.run(serve, config, backend="asyncio")
    except KeyboardInterrupt:
        pass
    except (OSError, SecretBoxError) as exc:  # e.g. the port is taken
        raise click.ClickException(str(exc)) from exc
    except ExceptionGroup as group:  # the server's task group wraps what stopped it
        found: BaseException | None = group.split(OSError)[0]
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]
        if found is None:
            raise
        raise click.ClickException(str(found)) from group


@controlplane.command("migrate")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="controlplane.toml",
)
@click.option(
    "--check", is_flag=True, help="Only say whether the schema is current (exit 1 if not)."
)
def migrate_command(config_path: Path, check: bool) -> None:
    """Bring the database schema to this version's newest revision (idempotent)."""
    code, message = migrate(config_path, check)
    if code == 2:
        raise click.ClickException(message)
    click.echo(message)
    if code:
        raise click.exceptions.Exit(code)


def migrate(config_path: Path, check: bool) -> tuple[int, str]:
    """What `shipyard controlplane migrate [--check]` does: (exit status, what it says). 1: the
    check found the schema behind; 2: the config or the database is unusable. (Also called
    in-process by the installer's test host, installer/testing.py.)"""
    try:
        config = ControlPlaneConfig.load(config_path)
    except ConfigError as exc:
        return 2, str(exc)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        before, after, head = anyio.run(_migrate, config, check, backend="asyncio")
    except (OSError, SQLAlchemyError, SecretBoxError) as exc:
        return 2, f"cannot migrate {_redacted(config)}: {exc}"
    if check:
        if before == head:
            return 0, f"schema is current (revision {head})"
        return 1, f"schema needs migrating: revision {before or 'none'} -> {head}"
    if before == after:
        return 0, f"schema is current (revision {after})"
    return 0, f"migrated the schema: revision {before or 'none'} -> {after}"


async def _migrate(
    config: ControlPlaneConfig, check: bool
) -> tuple[str | None, str | None, str | None]:
    from controlplane.db.engine import create_engine, head_revision, migrate, revisions
    from controlplane.secretbox import SecretBox

    if config.database_url == "":  # the embedded database lives in the state directory
        if check and not (config.state_dir / "controlplane.db").exists():
            return None, None, head_revision()  # a check creates nothing
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = create_engine(config.effective_database_url)
    try:
        before, head = await revisions(engine)
        if not check and before != head:
            await migrate(engine, SecretBox.load_or_create(config.secrets_key_path))
        after, _ = await revisions(engine)
        return before, after, head
    finally:
        await engine.dispose()


def _redacted(config: ControlPlaneConfig) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(config.effective_database_url).render_as_string(hide_password=True)
    except (ValueError, SQLAlchemyError):
        return "the database"
