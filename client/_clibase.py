"""What every `shipyard` client command shares: one-line errors and running SDK calls under
trio with Ctrl-C turned into cancellation."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from typing import IO, Any, TypeVar

import click
import trio

from client.config import ClientConfig
from client.errors import ClientError
from client.sdk import Client

T = TypeVar("T")


class CommandError(click.ClickException):
    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"shipyard: error: {self.format_message()}", err=True)


class CommandUsageError(CommandError):
    exit_code = 2


def _one_line(exc: click.UsageError) -> CommandUsageError:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return CommandUsageError(exc.format_message() + hint)


class _OneLineErrors(click.Command):
    """Usage errors as one line instead of click's usage block (help itself still shows)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None


class Command(_OneLineErrors):
    pass


class Group(_OneLineErrors, click.Group):
    command_class = Command
    group_class = type  # subgroups are Groups too

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise _one_line(exc) from None


def leaf_error(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups, as nurseries raise them."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def call(fn: Callable[[Client], Awaitable[T]]) -> T:
    """Run `fn` with a client for the configured control plane under trio."""

    async def main() -> T:
        async with Client(ClientConfig.from_env()) as api:
            return await fn(api)

    try:
        return trio.run(main)
    except BaseException as exc:
        leaf = leaf_error(exc)
        if isinstance(leaf, ClientError):
            raise CommandError(str(leaf)) from None
        if isinstance(leaf, KeyboardInterrupt):
            raise click.exceptions.Exit(130) from None
        if isinstance(leaf, click.exceptions.Exit | click.ClickException) or os.environ.get(
            "SHIPYARD_DEBUG"
        ):
            raise
        message = f"internal error: {type(leaf).__name__}: {leaf} (SHIPYARD_DEBUG=1 shows more)"
        raise CommandError(message) from None


async def until_interrupted(body: Callable[[], Awaitable[int]]) -> int:
    """`body`'s result; SIGINT/SIGTERM cancel it instead (its finally blocks still run) and give
    128 + the signal number."""
    result = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal result
                async for signum in signals:
                    result = 128 + signum
                    nursery.cancel_scope.cancel()
                    return

            async def work() -> None:
                nonlocal result
                result = await body()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(work)
    return result
