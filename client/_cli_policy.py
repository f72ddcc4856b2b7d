"""`shipyard admin policy ...`: resource policies (GraphQL, the same mutations Backend.AI's
`admin keypair-resource-policy` sends). A policy applies to keypairs, users and projects; the
strictest of the three holds."""

from __future__ import annotations

import json
from typing import Any

import click

from client._clibase import Group, call
from client._console import parse_pairs, print_fields, print_table

FIELDS = (
    "name created_at default_for_unspecified total_resource_slots max_concurrent_sessions"
    " max_session_lifetime idle_timeout max_containers_per_session max_vfolder_count"
    " max_vfolder_size allowed_scaling_groups allowed_images utilization_window"
    " min_cpu_util_pct min_gpu_util_pct"
)


@click.group("policy", cls=Group)
def policy() -> None:
    """Resource policies (0 means no limit)."""


@policy.command("ls")
def policy_ls() -> None:
    """List resource policies."""
    data = call(lambda api: api.graphql(f"query {{ keypair_resource_policies {{ {FIELDS} }} }}"))
    columns = [
        ("name", "NAME"),
        ("max_concurrent_sessions", "SESSIONS"),
        ("total_resource_slots", "SLOTS"),
        ("max_session_lifetime", "LIFETIME"),
        ("idle_timeout", "IDLE"),
        ("allowed_scaling_groups", "POOLS"),
    ]
    print_table(data["keypair_resource_policies"], columns)


@policy.command("info")
@click.argument("name")
def policy_info(name: str) -> None:
    """Show the policy NAME."""
    query = f"query($n: String) {{ keypair_resource_policy(name: $n) {{ {FIELDS} }} }}"
    found = call(lambda api: api.graphql(query, {"n": name}))["keypair_resource_policy"]
    if found is None:
        raise click.ClickException(f"no resource policy named {name!r}")
    print_fields(list(found.items()))


def _limit_options(f: Any) -> Any:
    options = [
        click.option("--sessions", type=click.IntRange(0), help="Max concurrent sessions."),
        click.option(
            "-r",
            "--slot",
            "slots",
            multiple=True,
            callback=parse_pairs,
            help="Max total of a slot held at once, e.g. -r cuda.device=2 (repeatable).",
        ),
        click.option("--limited", is_flag=True, default=None, help="Slots not named: none."),
        click.option("--lifetime", type=click.IntRange(0), help="Max session lifetime (s)."),
        click.option("--idle-timeout", type=click.IntRange(0), help="Idle timeout (s)."),
        click.option(
            "--util-window",
            type=click.IntRange(0),
            help="End sessions under --min-cpu/--min-gpu for this long (s).",
        ),
        click.option("--min-cpu", type=click.IntRange(0, 100), help="Idle below this cpu %."),
        click.option("--min-gpu", type=click.IntRange(0, 100), help="Idle below this GPU %."),
        click.option("--vfolders", type=click.IntRange(0), help="Max virtual folders."),
        click.option("--vfolder-size", type=click.IntRange(0), help="Max folder size (bytes)."),
        click.option("--pool", "pools", multiple=True, help="An allowed scaling group."),
        click.option("--image", "images", multiple=True, help="An allowed image."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _props(values: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {
        "max_concurrent_sessions": values["sessions"],
        "max_session_lifetime": values["lifetime"],
        "idle_timeout": values["idle_timeout"],
        "utilization_window": values["util_window"],
        "min_cpu_util_pct": values["min_cpu"],
        "min_gpu_util_pct": values["min_gpu"],
        "max_vfolder_count": values["vfolders"],
        "max_vfolder_size": values["vfolder_size"],
    }
    if values["slots"]:
        props["total_resource_slots"] = json.dumps(values["slots"])
    if values["limited"]:
        props["default_for_unspecified"] = "LIMITED"
    if values["pools"]:
        props["allowed_scaling_groups"] = list(values["pools"])
    if values["images"]:
        props["allowed_images"] = list(values["images"])
    return {k: v for k, v in props.items() if v is not None}


@policy.command("add")
@click.argument("name")
@_limit_options
def policy_add(name: str, **values: Any) -> None:
    """Create the policy NAME."""
    query = (
        "mutation($n: String!, $p: CreateKeyPairResourcePolicyInput!) {"
        " create_keypair_resource_policy(name: $n, props: $p) { ok msg } }"
    )
    _done(call(lambda api: api.graphql(query, {"n": name, "p": _props(values)})))
    click.echo(f"created {name}")


@policy.command("set")
@click.argument("name")
@_limit_options
def policy_set(name: str, **values: Any) -> None:
    """Change the given limits of the policy NAME."""
    query = (
        "mutation($n: String!, $p: ModifyKeyPairResourcePolicyInput!) {"
        " modify_keypair_resource_policy(name: $n, props: $p) { ok msg } }"
    )
    _done(call(lambda api: api.graphql(query, {"n": name, "p": _props(values)})))
    click.echo(f"changed {name}")


@policy.command("rm")
@click.argument("name")
def policy_rm(name: str) -> None:
    """Delete the policy NAME (nothing may use it any more)."""
    query = "mutation($n: String!) { delete_keypair_resource_policy(name: $n) { ok msg } }"
    _done(call(lambda api: api.graphql(query, {"n": name})))
    click.echo(f"removed {name}")


@policy.command("assign")
@click.argument("name")
@click.option("--keypair", "access_key", help="A keypair, by access key.")
@click.option("--user", "email", help="A user, by e-mail.")
@click.option("--project", help="A project, by name (in --domain).")
@click.option("--domain", default="default", show_default=True, help="The project's domain.")
def policy_assign(
    name: str, access_key: str | None, email: str | None, project: str | None, domain: str
) -> None:
    """Put one keypair, user or project under the policy NAME."""
    query = (
        "mutation($n: String!, $k: String, $e: String, $p: String, $d: String) {"
        " set_resource_policy(name: $n, access_key: $k, email: $e, project: $p,"
        " domain_name: $d) { ok msg } }"
    )
    variables = {"n": name, "k": access_key, "e": email, "p": project, "d": domain}
    _done(call(lambda api: api.graphql(query, variables)))
    click.echo(f"{access_key or email or project} is under {name}")


def _done(data: dict[str, Any]) -> None:
    (result,) = data.values()
    if not result["ok"]:
        raise click.ClickException(result["msg"])
