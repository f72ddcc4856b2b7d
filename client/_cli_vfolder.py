"""`shipyard vfolder ...`: virtual folders, their files and their sharing. Uploads and downloads
show a progress bar on a terminal (none when stderr is not one) and resume after a dropped
connection."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from client import _transfers
from client._clibase import Group, call
from client._console import print_fields, print_table
from client.sdk import Client

PERMISSION = click.Choice(["ro", "rw", "wd"])


def _path(name: str, suffix: str = "") -> str:
    return f"/folders/{quote(name, safe='')}{suffix}"


def _request(method: str, path: str, body: Any = None) -> Any:
    return call(lambda api: api.request(method, path, body=body))


@click.group(cls=Group)
def vfolder() -> None:
    """Virtual folders: data that outlives sessions, mounted with `run --mount NAME`."""


@vfolder.command("list-hosts")
def list_hosts() -> None:
    """Storage hosts, their free space and quota mode."""
    hosts = _request("GET", "/folders/_/hosts")
    rows = [
        {"host": name, "mode": info["quota_mode"], **info["usage"]}
        for name, info in hosts["volume_info"].items()
    ]
    columns = [
        ("host", "HOST"),
        ("mode", "QUOTA"),
        ("capacity_bytes", "CAPACITY"),
        ("used_bytes", "USED"),
    ]
    print_table(rows, columns)
    click.echo(f"default: {hosts['default']}")


@vfolder.command("create")
@click.argument("name")
@click.option("--host", default=None, help="Storage host (default: the default host).")
@click.option("-p", "--project", default=None, help="Make it a folder of this project.")
@click.option("--permission", type=PERMISSION, default="rw", show_default=True)
@click.option("-q", "--quota", default=None, help="Size limit, e.g. 10g (default: none).")
@click.option("--cloneable", is_flag=True, help="Let those who reach it clone it.")
def create(
    name: str,
    host: str | None,
    project: str | None,
    permission: str,
    quota: str | None,
    cloneable: bool,
) -> None:
    """Create a folder."""
    body = {
        "name": name,
        "host": host,
        "group": project,
        "permission": permission,
        "quota": quota,
        "cloneable": cloneable,
    }
    created = _request("POST", "/folders", body)
    click.echo(f"created {created['name']} ({created['id']}) on {created['host']}")


@vfolder.command("ls")
def ls() -> None:
    """The folders you reach: yours, your projects', shared with you."""
    columns = [
        ("name", "NAME"),
        ("host", "HOST"),
        ("ownership_type", "OWNER"),
        ("permission", "PERMISSION"),
        ("created_at", "CREATED"),
    ]
    print_table(_request("GET", "/folders"), columns)


@vfolder.command("info")
@click.argument("name")
def info(name: str) -> None:
    """One folder, with its usage."""
    got = _request("GET", _path(name))
    keys = (
        "id",
        "name",
        "host",
        "ownership_type",
        "permission",
        "is_owner",
        "cloneable",
        "num_files",
        "used_bytes",
        "max_size",
        "created_at",
    )
    print_fields([(key, got.get(key)) for key in keys])


@vfolder.command("rm")
@click.argument("name")
def rm(name: str) -> None:
    """Delete a folder (to the trash, from which an admin can restore it)."""
    _request("DELETE", _path(name))
    click.echo(f"deleted {name}")


@vfolder.command("clone")
@click.argument("name")
@click.argument("target")
def clone(name: str, target: str) -> None:
    """Copy a folder into a new one of yours."""
    created = _request("POST", _path(name, "/clone"), {"target_name": target})
    click.echo(f"cloned {name} to {created['name']}")


@vfolder.command("invite")
@click.argument("name")
@click.argument("emails", nargs=-1, required=True)
@click.option("-p", "--permission", type=PERMISSION, default="rw", show_default=True)
def invite(name: str, emails: tuple[str, ...], permission: str) -> None:
    """Invite users to your folder; they accept with `vfolder accept`."""
    got = _request("POST", _path(name, "/invite"), {"perm": permission, "user_ids": emails})
    click.echo(f"invited {', '.join(got['invited_ids']) or 'nobody new'}")


@vfolder.command("invitations")
def invitations() -> None:
    """Invitations to you and from you, pending."""
    columns = [
        ("id", "ID"),
        ("vfolder_name", "FOLDER"),
        ("inviter", "FROM"),
        ("invitee", "TO"),
        ("perm", "PERMISSION"),
    ]
    print_table(_request("GET", "/folders/invitations/list")["invitations"], columns)


@vfolder.command("accept")
@click.argument("invitation_id")
def accept(invitation_id: str) -> None:
    """Accept an invitation."""
    _request("POST", "/folders/invitations/accept", {"inv_id": invitation_id})
    click.echo("accepted")


@vfolder.command("reject")
@click.argument("invitation_id")
def reject(invitation_id: str) -> None:
    """Reject an invitation to you, or cancel one of yours."""
    _request("DELETE", "/folders/invitations/delete", {"inv_id": invitation_id})
    click.echo("rejected")


@vfolder.command("share")
@click.argument("name")
@click.argument("emails", nargs=-1, required=True)
@click.option("-p", "--permission", type=PERMISSION, default="rw", show_default=True)
def share(name: str, emails: tuple[str, ...], permission: str) -> None:
    """Give members of a project folder's project a permission of their own (admin)."""
    got = _request("POST", _path(name, "/share"), {"permission": permission, "emails": emails})
    click.echo(f"shared with {', '.join(got['shared_emails'])}")


@vfolder.command("ls-files")
@click.argument("name")
@click.argument("path", default=".")
def ls_files(name: str, path: str) -> None:
    """The files of a folder inside the folder."""
    columns = [("mode", "MODE"), ("size", "SIZE"), ("modified", "MODIFIED"), ("name", "NAME")]
    print_table(_request("GET", _path(name, "/files"), {"path": path})["items"], columns)


@vfolder.command("mkdir")
@click.argument("name")
@click.argument("path")
@click.option(
    "-p", "--parents", is_flag=True, help="Make missing parents too, no error if it exists."
)
def mkdir(name: str, path: str, parents: bool) -> None:
    """Make a folder inside the folder."""
    _request("POST", _path(name, "/mkdir"), {"path": path, "parents": parents, "exist_ok": parents})


@vfolder.command("mv")
@click.argument("name")
@click.argument("src")
@click.argument("dst")
def mv(name: str, src: str, dst: str) -> None:
    """Rename or move a file or folder inside the folder."""
    _request("POST", _path(name, "/move-file"), {"src": src, "dst": dst})


def _with_progress(
    label: str, total: int | None, work: Callable[[Callable[[int], None]], Awaitable[None]]
) -> Callable[[Client], Awaitable[None]]:
    async def run(api: Client) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        # a bar only on a terminal: redirected output stays plain
        with Progress(*columns, disable=not sys.stderr.isatty(), transient=True) as bar:
            task = bar.add_task(label, total=total)
            await work(lambda done: bar.update(task, completed=done))
        click.echo(f"{label}: done")

    return run


@vfolder.command("upload")
@click.argument("name")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("-d", "--dest", default="", help="Folder inside the folder to put them in.")
def upload(name: str, files: tuple[Path, ...], dest: str) -> None:
    """Upload files (resumed if the connection drops)."""
    for local in files:
        remote = f"{dest.strip('/')}/{local.name}" if dest else local.name

        size = local.stat().st_size

        async def send(
            api: Client, local: Path = local, remote: str = remote, size: int = size
        ) -> None:
            async def work(progress: Callable[[int], None]) -> None:
                await _transfers.upload(api, name, local, remote, progress)

            await _with_progress(f"{local} -> {name}/{remote}", size, work)(api)

        call(send)


@vfolder.command("download")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True)
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("--archive", is_flag=True, help="Download folders as .tar archives.")
def download(name: str, paths: tuple[str, ...], dest: Path, archive: bool) -> None:
    """Download files (or with --archive folders), resumed if the connection drops."""
    for remote in paths:
        base = remote.rstrip("/").rpartition("/")[2] or name
        local = dest / (f"{base}.tar" if archive else base)
        if local.exists():
            raise click.ClickException(f"{local} exists: remove it or choose another --dest")

        async def fetch(api: Client, remote: str = remote, local: Path = local) -> None:
            async def work(progress: Callable[[int], None]) -> None:
                await _transfers.download(
                    api, name, remote, local, archive=archive, progress=progress
                )

            await _with_progress(f"{name}/{remote} -> {local}", None, work)(api)

        call(fetch)
