"""`shipyard admin scaling-group ...`: node pools and who may use them (GraphQL, the mutations
Backend.AI's manager has). Listing needs an admin (a domain admin sees its domain's pools);
making, binding and moving nodes need a superadmin."""

from __future__ import annotations

from typing import Any

import click

from client._clibase import Group, call
from client._console import print_table

FIELDS = "name description is_active is_public scheduler scheduler_opts"


@click.group("scaling-group", cls=Group)
def scaling_group() -> None:
    """Node pools (scaling groups)."""


@scaling_group.command("ls")
def pool_ls() -> None:
    """List the pools you may see."""
    data = call(lambda api: api.graphql(f"query {{ scaling_groups {{ {FIELDS} }} }}"))
    columns = [
        ("name", "NAME"),
        ("scheduler", "SCHEDULER"),
        ("is_active", "ACTIVE"),
        ("description", "DESCRIPTION"),
    ]
    print_table(data["scaling_groups"], columns)


@scaling_group.command("create")
@click.argument("name")
@click.option("--scheduler", type=click.Choice(["fifo", "lifo", "drf"]), default="fifo")
@click.option("--description", default="")
def pool_create(name: str, scheduler: str, description: str) -> None:
    """Make the pool NAME; no project may use it until it is bound."""
    query = (
        "mutation($n: String!, $p: CreateScalingGroupInput!) {"
        " create_scaling_group(name: $n, props: $p) { ok msg } }"
    )
    props = {"scheduler": scheduler, "description": description}
    _done(call(lambda api: api.graphql(query, {"n": name, "p": props})))
    click.echo(f"created {name}")


@scaling_group.command("bind")
@click.argument("name")
@click.option("--domain", "domain", default=None, help="Every project of this domain.")
@click.option("--project", "project_id", default=None, help="One project, by id.")
def pool_bind(name: str, domain: str | None, project_id: str | None) -> None:
    """Let a domain's projects, or one project, use the pool NAME."""
    if (domain is None) == (project_id is None):
        raise click.UsageError("give either --domain or --project")
    if domain is not None:
        query = (
            "mutation($s: String!, $d: String!) {"
            " associate_scaling_group_with_domain(scaling_group: $s, domain: $d) { ok msg } }"
        )
        variables: dict[str, str | None] = {"s": name, "d": domain}
    else:
        query = (
            "mutation($s: String!, $g: UUID!) { associate_scaling_group_with_user_group("
            "scaling_group: $s, user_group: $g) { ok msg } }"
        )
        variables = {"s": name, "g": project_id}
    _done(call(lambda api: api.graphql(query, variables)))
    click.echo(f"bound {name}")


@scaling_group.command("move-node")
@click.argument("node_id")
@click.argument("name")
def pool_move_node(node_id: str, name: str) -> None:
    """Put the node NODE_ID in the pool NAME."""
    query = (
        "mutation($i: String!, $s: String) {"
        " modify_agent(id: $i, props: {scaling_group: $s}) { ok msg } }"
    )
    _done(call(lambda api: api.graphql(query, {"i": node_id, "s": name})))
    click.echo(f"{node_id} is in {name}")


def _done(data: dict[str, Any]) -> None:
    (result,) = data.values()
    if not result["ok"]:
        raise click.ClickException(result["msg"])
