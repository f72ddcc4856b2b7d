"""`shipyard install`, `shipyard uninstall` and `shipyard node token create`.

Headless mode prints one line per event, so a log of it reads as a transcript; the exit status
is 0 only when the final check passed. Everything heavy is imported inside the commands.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from installer.engine import Event, Outcome

EXIT_PLAN = 2  # the answers file is unusable (nothing was changed)


class Printer:
    """Events as lines on stdout: `==>` a step starts, indented lines are its log, `ok`/`FAILED`
    say how it ended, `<==` is a rollback."""

    def __init__(self, done: str = "installation OK") -> None:
        self.started: dict[str, float] = {}
        self.done = done

    def __call__(self, event: Event) -> None:
        from installer import engine as e

        match event:
            case e.StepStarted(step, title):
                self.started[step] = time.monotonic()
                self._out(f"==> {step}: {title}" if title else f"==> {step}")
            case e.StepLog(step, line):
                self._out(f"    {step}: {line}")
            case e.StepFinished(step, changed):
                took = time.monotonic() - self.started.get(step, time.monotonic())
                self._out(f"ok  {step} ({'changed' if changed else 'no change'}, {took:.1f} s)")
            case e.StepFailed(step, error, fix):
                lines = error.splitlines() or [""]
                self._out(f"FAILED {step}: {lines[0]}")
                for line in lines[1:]:
                    self._out(f"    {line}")
                if fix:
                    self._out(f"    fix: {fix}")
            case e.RollingBack(step):
                self._out(f"<== undo {step}")
            case e.Finished(ok, summary):
                self._finished(ok, summary)

    def _finished(self, ok: bool, summary: dict[str, Any]) -> None:
        self._out("")
        self._out(self.done if ok else "FAILED")
        for key, value in summary.items():
            if key in ("problems",) or value in (None, "", []):
                continue
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            self._out(f"  {key}: {shown}")

    @staticmethod
    def _out(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()


# --- shipyard install ------------------------------------------------------------------------


@click.command()
@click.option("--detect", "detect_only", is_flag=True, help="Only show what this machine has.")
@click.option("--json", "as_json", is_flag=True, help="With --detect: print the report as JSON.")
@click.option("--headless", is_flag=True, help="No text UI: install what --answers describes.")
@click.option(
    "--answers",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The plan as TOML (see installer/examples/single-node.toml).",
)
@click.option(
    "--executable",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Only install this program as PATH (laid out in PATH/../../lib/shipyard), no"
    " services: for a machine that only uses the client.",
)
def install(
    detect_only: bool,
    as_json: bool,
    headless: bool,
    answers: Path | None,
    executable: Path | None,
) -> None:
    """Install Shipyard on this machine under systemd (or upgrade or repair it).

    Without --headless this opens the installer's text UI."""
    import trio

    if executable is not None:
        if detect_only or headless or answers is not None:
            raise click.UsageError("--executable goes alone")
        raise click.exceptions.Exit(_install_executable(executable))
    if detect_only:
        from installer.detect import detect, render_table

        report = trio.run(detect)
        click.echo(report.to_json() if as_json else render_table(report), nl=not as_json)
        if as_json:
            click.echo()
        return
    if as_json:
        raise click.UsageError("--json goes with --detect")
    if not headless:
        if answers is not None:
            raise click.UsageError("--answers goes with --headless")
        raise click.exceptions.Exit(_run_tui())
    if answers is None:
        raise click.UsageError("--headless needs --answers FILE")
    from installer.engine import install as run_install
    from installer.errors import PlanError
    from installer.plan import Plan

    try:
        plan = Plan.load(answers)
    except PlanError as exc:
        click.echo(f"shipyard: error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_PLAN) from None
    outcome: Outcome = trio.run(run_install, plan, Printer())
    raise click.exceptions.Exit(0 if outcome.ok else 1)


def _install_executable(path: Path) -> int:
    import trio

    from installer.engine import install_executable
    from installer.plan import Plan

    plan = Plan(role="all-in-one", executable=path.absolute())
    outcome = trio.run(install_executable, plan, Printer("installed"))
    return 0 if outcome.ok else 1


def _run_tui() -> int:
    try:
        from installer.tui.app import run_tui
    except ImportError as exc:  # a build without Textual
        click.echo(
            f"shipyard: the installer's text UI is not available ({exc});"
            " use --headless --answers FILE",
            err=True,
        )
        return 1
    return run_tui()


# --- shipyard uninstall ----------------------------------------------------------------------


@click.command()
@click.option("--headless", is_flag=True, help="Do not ask for confirmation.")
@click.option("--purge", is_flag=True, help="Also remove the state: database, keys, vfolders.")
@click.option(
    "--config-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/etc/shipyard"),
    show_default=True,
    help="The installation's configuration directory.",
)
def uninstall(headless: bool, purge: bool, config_dir: Path) -> None:
    """Remove the services, units, configuration, executable and the node's session
    containers. The state directory stays unless --purge."""
    import trio

    from installer.engine import uninstall as run_uninstall

    if not headless:
        what = "everything, including the database and keys" if purge else "it (state is kept)"
        click.confirm(f"Remove Shipyard from this machine: {what}?", abort=True)
    outcome: Outcome = trio.run(run_uninstall, config_dir, purge, Printer("uninstalled"))
    raise click.exceptions.Exit(0 if outcome.ok else 1)


# --- shipyard node token create --------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """ "90s", "30m", "24h", "7d", or a number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 24h or 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


@click.group()
def token() -> None:
    """Join tokens that let nodes on other machines into this cluster."""


@token.command("create")
@click.option("--ttl", default="24h", show_default=True, help="How long it may be used to join.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def token_create(ttl: str, as_json: bool) -> None:
    """Create a join token (admin). A node installed with it joins this control plane."""
    import trio

    from client.config import ClientConfig
    from client.errors import ClientError
    from client.sdk import Client

    seconds = parse_duration(ttl).total_seconds()

    async def create() -> tuple[str, dict[str, Any]]:
        config = ClientConfig.from_env()
        async with Client(config) as api:
            answer = await api.request("POST", "/admin/node-tokens", body={"ttl": seconds})
        return config.endpoint, dict(answer)

    try:
        endpoint, answer = trio.run(create)
    except ClientError as exc:
        click.echo(f"shipyard: error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"token:   {answer['token']}")
    click.echo(f"expires: {answer['expiresAt']} (unless a node joins with it before)")
    click.echo(
        "\nOn the new node, put these answers in node.toml and run"
        " `shipyard install --headless --answers node.toml`:\n"
    )
    click.echo('  role = "node"')
    click.echo(f'  controlplane_url = "{endpoint}"')
    click.echo(f'  join_token = "{answer["token"]}"')
    if re.search(r"//(127\.|localhost|\[::1\])", endpoint):
        click.echo(
            "\nThis control plane is reached at a loopback address: give the node an address it"
            " can reach (the control plane's bind_host must listen there)."
        )


def _admin_call(method: str, path: str) -> Any:
    """One signed request with the admin's client settings; exits 1 saying why it failed."""
    import trio

    from client.config import ClientConfig
    from client.errors import ClientError
    from client.sdk import Client

    async def call() -> Any:
        async with Client(ClientConfig.from_env()) as api:
            return await api.request(method, path)

    try:
        return trio.run(call)
    except ClientError as exc:
        click.echo(f"shipyard: error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None


@token.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def token_ls(as_json: bool) -> None:
    """List join tokens (admin): which node each let in, and which are revoked."""
    answer = _admin_call("GET", "/admin/node-tokens")
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"{'ID':<14}{'NODE':<24}{'CREATED':<22}STATE")
    for item in answer["items"]:
        if item["revokedAt"]:
            state = f"revoked {item['revokedAt'][:19]}"
        elif item["nodeId"]:
            state = "in use"
        else:
            state = f"unused, expires {item['expiresAt'][:19]}"
        node = item["nodeId"] or "-"
        click.echo(f"{item['id']:<14}{node:<24}{item['createdAt'][:19]:<22}{state}")


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a join token (admin): it admits nobody, its node is disconnected, and the node
    id may join again with a new token."""
    answer = _admin_call("DELETE", f"/admin/node-tokens/{token_id}")
    node = f" (node {answer['nodeId']} disconnected)" if answer["nodeId"] else ""
    click.echo(f"revoked {answer['id']}{node}")
