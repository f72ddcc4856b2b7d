"""`shipyard admin domain|project|user|preset|audit ...`: who may use what, and who did what."""

from __future__ import annotations

import json
from datetime import datetime

import click

from client._clibase import Command, Group, call
from client._console import print_fields, print_table


@click.group("domain", cls=Group)
def domain() -> None:
    """Domains: organisations, each with its users and projects."""


@domain.command("ls")
def domain_ls() -> None:
    """List the domains you manage."""
    print_table(call(lambda api: api.list_domains()), [("name", "NAME"), ("createdAt", "CREATED")])


@domain.command("create")
@click.argument("name")
def domain_create(name: str) -> None:
    """Create the domain NAME with its `default` project (superadmin)."""
    call(lambda api: api.create_domain(name))
    click.echo(f"created domain {name}")


@click.group("project", cls=Group)
def project() -> None:
    """Projects (Backend.AI's groups) and their members."""


@project.command("ls")
@click.option("-d", "--domain", help="Only this domain's projects.")
def project_ls(domain: str | None) -> None:
    """List the projects of the domains you manage, with their members."""
    columns = [("domainName", "DOMAIN"), ("name", "NAME"), ("id", "ID"), ("members", "MEMBERS")]
    print_table(call(lambda api: api.list_projects(domain)), columns)


@project.command("create")
@click.argument("name")
@click.option("-d", "--domain", default="default", show_default=True)
def project_create(name: str, domain: str) -> None:
    """Create the project NAME in a domain."""
    created = call(lambda api: api.create_project(domain, name))
    click.echo(f"created project {domain}/{name} ({created.get('id')})")


@project.command("add-member")
@click.argument("name")
@click.argument("email")
@click.option("-d", "--domain", default="default", show_default=True)
def project_add_member(name: str, email: str, domain: str) -> None:
    """Make the user EMAIL a member of the project NAME."""
    call(lambda api: api.set_member(domain, name, email, True))
    click.echo(f"{email} is a member of {domain}/{name}")


@project.command("rm-member")
@click.argument("name")
@click.argument("email")
@click.option("-d", "--domain", default="default", show_default=True)
def project_rm_member(name: str, email: str, domain: str) -> None:
    """Take the user EMAIL out of the project NAME."""
    call(lambda api: api.set_member(domain, name, email, False))
    click.echo(f"{email} is no longer a member of {domain}/{name}")


_USER_COLUMNS = [
    ("email", "EMAIL"),
    ("role", "ROLE"),
    ("status", "STATUS"),
    ("domainName", "DOMAIN"),
    ("projects", "PROJECTS"),
    ("hasPassword", "PASSWORD"),
]


@click.group("user", cls=Group)
def user() -> None:
    """Users: roles (superadmin, admin of a domain, user), status and sign-in password."""


@user.command("ls")
@click.option("-d", "--domain", help="Only this domain's users.")
@click.option("--status", type=click.Choice(["active", "inactive", "deleted"]))
def user_ls(domain: str | None, status: str | None) -> None:
    """List the users of the domains you manage."""
    print_table(call(lambda api: api.list_users(domain, status)), _USER_COLUMNS)


@user.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["user", "admin", "superadmin"]), default="user")
@click.option("-d", "--domain", default="default", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def user_create(email: str, role: str, domain: str, password: str) -> None:
    """Create the user EMAIL (it signs in with EMAIL and the password; `keypair create EMAIL`
    gives it a keypair)."""
    body = {"email": email, "role": role, "domain": domain, "password": password}
    print_table([call(lambda api: api.create_user(body))], _USER_COLUMNS)


@user.command("set")
@click.argument("email")
@click.option("--status", type=click.Choice(["active", "inactive", "deleted"]))
@click.option("--role", type=click.Choice(["user", "admin", "superadmin"]))
@click.option("--password", is_flag=True, help="Ask for a new password.")
def user_set(email: str, status: str | None, role: str | None, password: bool) -> None:
    """Change the status, role or password of the user EMAIL."""
    changes: dict[str, str] = {k: v for k, v in {"status": status, "role": role}.items() if v}
    if password:
        changes["password"] = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not changes:
        raise click.UsageError("nothing to change: give --status, --role or --password")
    print_table([call(lambda api: api.update_user(email, changes))], _USER_COLUMNS)


@click.group("preset", cls=Group)
def preset() -> None:
    """Resource presets: named slot bundles (e.g. small, gpu-1)."""


@preset.command("ls")
@click.option("--check", is_flag=True, help="Also say which presets fit now.")
def preset_ls(check: bool) -> None:
    """List the resource presets."""
    if check:
        items = call(lambda api: api.check_presets())["presets"]
    else:
        items = call(lambda api: api.list_presets())
    for item in items:
        item["slots"] = [f"{k}={v}" for k, v in sorted(item["resource_slots"].items())]
    columns = [("name", "NAME"), ("slots", "SLOTS"), ("shared_memory", "SHMEM")]
    print_table(items, columns + ([("allocatable", "FITS NOW")] if check else []))


@preset.command("create")
@click.argument("name")
@click.option("-r", "--resource", "resources", multiple=True, help="SLOT=VALUE, e.g. cpu=2")
@click.option("--shmem", help="Shared memory, e.g. 64m.")
def preset_create(name: str, resources: tuple[str, ...], shmem: str | None) -> None:
    """Create the preset NAME (superadmin)."""
    slots = {}
    for item in resources:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.UsageError(f"-r {item!r}: write SLOT=VALUE, e.g. cpu=2")
        slots[key.strip()] = value.strip()
    created = call(lambda api: api.create_preset(name, slots, shmem))
    print_fields([("name", created.get("name")), ("slots", created.get("resource_slots"))])


@preset.command("rm")
@click.argument("name")
def preset_rm(name: str) -> None:
    """Remove the preset NAME (superadmin)."""
    call(lambda api: api.delete_preset(name))
    click.echo(f"removed preset {name}")


@click.command("audit", cls=Command)
@click.option("--actor", help="An access key (or, for sign-ins, the e-mail tried).")
@click.option("--action", help="A part of the action, e.g. /admin/users or sign-in.")
@click.option("--outcome", type=click.Choice(["success", "failure"]))
@click.option("--since", type=click.DateTime(), help="From this time (UTC).")
@click.option("--until", type=click.DateTime(), help="Before this time (UTC).")
@click.option("--limit", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option("--json-lines", "as_json", is_flag=True, help="One JSON object a line (export).")
def audit(
    actor: str | None,
    action: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the audit log: every state-changing call and sign-in, oldest first."""
    filters = {
        "actor": actor,
        "action": action,
        "outcome": outcome,
        "since": since.isoformat() + "Z" if since else None,
        "until": until.isoformat() + "Z" if until else None,
        "limit": str(limit),
    }
    items = call(lambda api: api.audit({k: v for k, v in filters.items() if v}))
    if as_json:
        for item in items:
            click.echo(json.dumps(item))
        return
    columns = [
        ("at", "WHEN"),
        ("actor", "WHO"),
        ("remoteAddr", "FROM"),
        ("action", "WHAT"),
        ("target", "TARGET"),
        ("statusCode", "STATUS"),
        ("outcome", "OUTCOME"),
    ]
    print_table(items, columns)
