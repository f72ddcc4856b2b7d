"""The audit log: who did what, when, from where, and how it went.

The API layer records every state-changing call (any method but GET/HEAD/OPTIONS, and GraphQL
mutations; GraphQL queries are reads) and every sign-in, succeeded or failed, in one hook
(`api/app.py`); no route writes here itself. Refused calls are recorded too (outcome
`failure`, with the status code), so a probe of other people's objects leaves a trace. Nothing
in the API updates or deletes an entry: admins can only read and export it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    value_from_ast_untyped,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import AuditEntry

SIGN_IN = "sign-in"
MAX_PAGE = 1000


# arguments that never go into the log
SECRET_ARGUMENTS = frozenset({"password", "secret_key", "privkey"})
TARGET_KEYS = ("name", "clientSessionToken", "email", "user")  # what a create names


@dataclass(frozen=True)
class Mutations:
    fields: list[str]  # the root fields selected, e.g. ["create_user"]
    target: str | None  # their plain arguments: "email=a@example.com; name=lab"


def graphql_mutations(document: object, variables: object = None) -> Mutations | None:
    """The mutations a GraphQL request makes and what they act on; None when it is no
    mutation (a query, or text that does not parse: it changes nothing)."""
    if not isinstance(document, str):
        return None
    try:
        parsed = parse(document, max_tokens=10_000)
    except GraphQLError:
        return None
    values = variables if isinstance(variables, dict) else {}
    fields, arguments = [], []
    for definition in parsed.definitions:
        if not (
            isinstance(definition, OperationDefinitionNode)
            and definition.operation == OperationType.MUTATION
        ):
            continue
        for selection in definition.selection_set.selections:
            if not isinstance(selection, FieldNode):
                continue
            fields.append(selection.name.value)
            for argument in selection.arguments or ():
                value = value_from_ast_untyped(argument.value, values)
                if argument.name.value in SECRET_ARGUMENTS or isinstance(value, dict | list):
                    continue  # objects (props) hold settings, not what is acted on
                arguments.append(f"{argument.name.value}={value}")
    if not fields:
        return None
    return Mutations(fields, "; ".join(arguments) or None)


def graphql_failed(answer: object, fields: list[str]) -> bool:
    """Whether a mutation's 200 answer says it failed: an error, or `ok: false` (Backend.AI's
    envelope for a refusal the mutation itself reports)."""
    if not isinstance(answer, dict):
        return True
    if answer.get("errors"):
        return True
    data = answer.get("data") or {}
    return any(isinstance(data.get(f), dict) and data[f].get("ok") is False for f in fields)


def rest_target(view_args: dict[str, Any] | None, body: object) -> str | None:
    """What a REST call acts on: its path parameters, else the name a create gives."""
    if view_args:
        return "/".join(str(v) for v in view_args.values())
    if isinstance(body, dict):
        for key in TARGET_KEYS:
            if isinstance(body.get(key), str):
                return str(body[key])
    return None


async def record(
    db: DBSession,
    *,
    actor: str | None,
    domain_name: str | None,
    action: str,
    target: str | None,
    remote_addr: str,
    status_code: int,
    failed: bool = False,
) -> None:
    """Note one call; it failed if its status says so, or `failed` (a GraphQL refusal)."""
    db.add(
        AuditEntry(
            actor=actor,
            domain_name=domain_name,
            action=action[:300],
            target=target[:300] if target is not None else None,
            remote_addr=remote_addr[:64],
            status_code=status_code,
            outcome="failure" if failed or status_code >= 400 else "success",
        )
    )
    await db.commit()


@dataclass(frozen=True)
class Filters:
    actor: str | None = None
    action: str | None = None  # a substring of the action
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    domain_name: str | None = None  # a domain admin sees its own domain's entries only
    limit: int = MAX_PAGE


async def entries(db: DBSession, filters: Filters) -> list[AuditEntry]:
    """Matching entries, oldest first (the newest `limit` of them)."""
    query = select(AuditEntry)
    if filters.actor is not None:
        query = query.where(AuditEntry.actor == filters.actor)
    if filters.action is not None:
        query = query.where(AuditEntry.action.contains(filters.action, autoescape=True))
    if filters.outcome is not None:
        query = query.where(AuditEntry.outcome == filters.outcome)
    if filters.since is not None:
        query = query.where(AuditEntry.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEntry.at < filters.until)
    if filters.domain_name is not None:
        query = query.where(AuditEntry.domain_name == filters.domain_name)
    newest = await db.scalars(query.order_by(AuditEntry.id.desc()).limit(filters.limit))
    return list(reversed(list(newest)))
