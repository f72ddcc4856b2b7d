"""The audit log: who did what, when, from where, and how it went.

The API layer records every state-changing call (any method but GET/HEAD/OPTIONS, and GraphQL
mutations; GraphQL queries are reads) and every sign-in, succeeded or failed, in one hook
(`api/app.py`); no route writes here itself. Refused calls are recorded too (outcome
`failure`, with the status code), so a probe of other people's objects leaves a trace. Nothing
in the API updates or deletes an entry: admins can only read and export it.

Recording does not keep the call waiting: `Trail.note` queues the entry (stamped with the time of
the call), and a job in Core's task group (`Trail.run`) writes what was queued in one
transaction, WRITE_DELAY after the first of them, so that a busy client's calls share one
commit rather than pay one each. Nothing is lost on the way: reading the log (`Trail.entries`)
first writes what is queued, so a call's entry is there once the call has returned, and a
stopping control plane writes the rest before it closes the database (controlplane/server.py);
only a crash loses what the last WRITE_DELAY queued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import anyio
from graphql import (
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    value_from_ast_untyped,
)
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession
from sqlalchemy.ext.asyncio import async_sessionmaker

from controlplane.db.models import AuditEntry
from controlplane.db.types import utcnow

log = logging.getLogger(__name__)
WRITE_DELAY = 0.1  # seconds
_TABLE = cast(Table, AuditEntry.__table__)  # a plain INSERT: no ORM bookkeeping for rows not read

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


def entry(
    *,
    actor: str | None,
    domain_name: str | None,
    action: str,
    target: str | None,
    remote_addr: str,
    status_code: int,
    failed: bool = False,
) -> dict[str, Any]:
    """One call's entry (its columns); it failed if its status says so, or `failed` (a GraphQL
    refusal)."""
    return {
        "at": utcnow(),
        "actor": actor,
        "domain_name": domain_name,
        "action": action[:300],
        "target": target[:300] if target is not None else None,
        "remote_addr": remote_addr[:64],
        "status_code": status_code,
        "outcome": "failure" if failed or status_code >= 400 else "success",
    }


class Trail:
    """Entries noted on the request path, written off it in batches (see the module's text)."""

    def __init__(self, db: async_sessionmaker[DBSession]) -> None:
        self._db = db
        self._queued: list[dict[str, Any]] = []
        self._noted = anyio.Event()
        self._writing = anyio.Lock()  # a reader's write waits for the batch in flight

    def note(self, values: dict[str, Any]) -> None:
        """Queue one entry (from `entry`). Never blocks."""
        self._queued.append(values)
        self._noted.set()

    async def run(self) -> None:
        """A job in Core's task group: write what is queued, a batch at most every
        WRITE_DELAY."""
        while True:
            await self._noted.wait()
            await anyio.sleep(WRITE_DELAY)
            self._noted = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Write every entry queued before this call (and those queued meanwhile)."""
        async with self._writing:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    async with self._db() as db:
                        await db.execute(insert(_TABLE), batch)
                        await db.commit()
                except Exception:  # the calls happened: the log keeps what the table lost
                    actions = ", ".join(f"{e['actor']} {e['action']}" for e in batch)
                    log.exception("could not record in the audit log: %s", actions)

    async def entries(self, filters: Filters) -> list[AuditEntry]:
        """Matching entries, oldest first (the newest `filters.limit` of them), including the
        calls that returned before this one."""
        await self.flush()
        async with self._db() as db:
            return await _select(db, filters)


@dataclass(frozen=True)
class Filters:
    actor: str | None = None
    action: str | None = None  # a substring of the action
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    domain_name: str | None = None  # a domain admin sees its own domain's entries only
    limit: int = MAX_PAGE


async def _select(db: DBSession, filters: Filters) -> list[AuditEntry]:
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
