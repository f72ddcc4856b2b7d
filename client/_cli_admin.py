"""`shipyard admin ...` and `shipyard image ...` (`image build` is the image builder's,
`kernelimages`; the `shipyard` command's registry adds it to this group)."""

from __future__ import annotations

import json
from decimal import Decimal

import click

from client._cli_policy import policy
from client._cli_pools import scaling_group
from client._cli_tenancy import audit, domain, preset, project, user
from client._clibase import Group, call
from client._console import print_fields, print_table
from wire import format_bytes


@click.group(cls=Group)
def admin() -> None:
    """Administration (needs an admin keypair)."""


for _command in (domain, project, user, preset, audit, policy, scaling_group):
    admin.add_command(_command)


@admin.group("keypair")
def keypair() -> None:
    """Keypairs: the access/secret keys that sign API requests."""


@keypair.command("create")
@click.argument("email")
@click.option("--admin", "is_admin", is_flag=True, help="Give the keypair admin rights.")
def keypair_create(email: str, is_admin: bool) -> None:
    """Create a keypair for the user EMAIL."""
    created = call(lambda api: api.create_keypair(email, is_admin=is_admin))
    print_fields(
        [
            ("access key", created.get("accessKey")),
            ("secret key", created.get("secretKey")),
            ("user", created.get("userEmail")),
            ("admin", created.get("isAdmin")),
        ]
    )


@keypair.command("ls")
def keypair_ls() -> None:
    """List keypairs."""
    columns = [
        ("accessKey", "ACCESS KEY"),
        ("userEmail", "USER"),
        ("isActive", "ACTIVE"),
        ("isAdmin", "ADMIN"),
        ("createdAt", "CREATED"),
    ]
    print_table(call(lambda api: api.list_keypairs()), columns)


@keypair.command("rm")
@click.argument("access_key")
def keypair_rm(access_key: str) -> None:
    """Delete a keypair."""
    call(lambda api: api.delete_keypair(access_key))
    click.echo(f"removed {access_key}")


@admin.group("node")
def node() -> None:
    """Nodes: the machines that run sessions."""


@node.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def node_ls(as_json: bool) -> None:
    """List nodes: status, slots (occupied/available) and accelerator devices."""
    items = call(lambda api: api.list_nodes())
    if as_json:
        click.echo(json.dumps({"items": items}, indent=2))
        return
    rows = [
        {
            "id": n["id"],
            "status": n["status"] + (f" ({n['statusInfo']})" if n.get("statusInfo") else ""),
            "slots": _slots(n["occupiedSlots"], n["availableSlots"]),
            "devices": [f"{d['plugin']}:{d['id']}" for d in n.get("devices", [])],
            "lastContact": n["lastContact"][:19],
        }
        for n in items
    ]
    columns = [
        ("id", "ID"),
        ("status", "STATUS"),
        ("slots", "SLOTS (USED/TOTAL)"),
        ("devices", "DEVICES"),
        ("lastContact", "LAST CONTACT"),
    ]
    print_table(rows, columns)


def _slots(used: dict[str, str], total: dict[str, str]) -> str:
    def show(name: str, value: str) -> str:
        return format_bytes(int(Decimal(value))) if name == "mem" else value

    return " ".join(
        f"{k}={show(k, used.get(k, '0'))}/{show(k, v)}" for k, v in sorted(total.items())
    )


@click.group(cls=Group)
def image() -> None:
    """Kernel images and their aliases."""


@image.command("ls")
@click.option("--labels", "show_labels", is_flag=True, help="Add a column with their labels.")
def image_ls(show_labels: bool) -> None:
    """List the images the platform knows (built by recipe or registered), and where they are."""
    items = call(lambda api: api.list_images())
    for item in items:
        size = item.get("sizeBytes")
        item["size"] = f"{size / 1e6:.0f} MB" if isinstance(size, int | float) and size else None
        digest = item.get("digest")
        item["digest"] = digest.removeprefix("sha256:")[:12] if digest else None
        labels = item.get("labels") or {}
        item["labels"] = [f"{k}={v}" for k, v in sorted(labels.items())]
        item["architecture"] = item.get("architecture") or None
    columns = [
        ("name", "NAME"),
        ("source", "SOURCE"),
        ("digest", "DIGEST"),
        ("size", "SIZE"),
        ("architecture", "ARCH"),
        ("aliases", "ALIASES"),
        ("nodes", "NODES"),
    ]
    print_table(items, columns + ([("labels", "LABELS")] if show_labels else []))


@image.command("register")
@click.argument("name")
def image_register(name: str) -> None:
    """Make the image NAME, which some node has, known: listed and usable (admin)."""
    result = call(lambda api: api.register_image(name))
    click.echo(f"registered {result.get('name', name)} (on {', '.join(result.get('nodes', []))})")


@image.command("forget")
@click.argument("name")
def image_forget(name: str) -> None:
    """Make the image NAME unknown: no longer listed or usable for new sessions (admin)."""
    call(lambda api: api.forget_image(name))
    click.echo(f"forgot {name}")


@image.command("alias")
@click.argument("alias")
@click.argument("target", required=False)
@click.option("--remove", is_flag=True, help="Remove ALIAS instead of setting it.")
def image_alias(alias: str, target: str | None, remove: bool) -> None:
    """Point ALIAS at the image TARGET (or remove it with --remove)."""
    if remove:
        if target is not None:
            raise click.UsageError("--remove takes only ALIAS")
        _dealias(alias)
        return
    if target is None:
        raise click.UsageError("missing TARGET (or use --remove ALIAS)")
    result = call(lambda api: api.alias_image(alias, target))
    click.echo(f"{result.get('alias', alias)} -> {result.get('target', target)}")


@image.command("dealias")
@click.argument("alias")
def image_dealias(alias: str) -> None:
    """Remove an image alias."""
    _dealias(alias)


def _dealias(alias: str) -> None:
    call(lambda api: api.dealias_image(alias))
    click.echo(f"removed alias {alias}")
