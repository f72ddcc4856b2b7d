"""The audit log: who did what, when, from where, and how it went.

The API layer records every state-changing call (any method but GET/HEAD/OPTIONS, and GraphQL
mutations; GraphQL queries are reads) and every sign-in, succeeded or failed, in one hook
(`api/app.py`); no route writes here itself. Nothing in the API updates or deletes an entry:
admins can only read and export it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import AuditEntry

SIGN_IN = "sign-in"
MAX_PAGE = 1000


def graphql_mutations(document: object) -> list[str] | None:
    """The root fields a GraphQL request's mutations select (e.g. ["create_user"]); None when
    it is no mutation (a query, or text that does not parse: it changes nothing)."""
    if not isinstance(document, str):
        return None
    try:
        parsed = parse(document, max_tokens=10_000)
    except GraphQLError:
        return None
    fields = [
        selection.name.value
        for definition in parsed.definitions
        if isinstance(definition, OperationDefinitionNode)
        and definition.operation == OperationType.MUTATION
        for selection in definition.selection_set.selections
        if hasattr(selection, "name")
    ]
    return fields or None


async def record(
    db: DBSession,
    *,
    actor: str | None,
    domain_name: str | None,
    action: str,
    remote_addr: str,
    status_code: int,
) -> None:
    db.add(
        AuditEntry(
            actor=actor,
            domain_name=domain_name,
            action=action[:300],
            remote_addr=remote_addr[:64],
            status_code=status_code,
            outcome="success" if status_code < 400 else "failure",
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
