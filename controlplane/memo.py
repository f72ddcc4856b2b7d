"""In-memory copies of database answers that every request needs (who signed it), dropped
whenever a commit changes a table they were read from.

One control plane process serves an installation, and every write goes through Core's
sessionmaker, so the database session itself can say what changed: `session_class` gives a
Session class whose flushes (rows added, changed, deleted) and statements (bulk UPDATE, DELETE,
INSERT) note the tables they touch, and whose commit then clears every `Memo` that was read from
one of them. A route author cannot forget to invalidate: there is nothing to call.

A read that raced a commit must not put back what that commit replaced: `Memo.get_or_load`
keeps what it loaded only if no clear happened while it was loading (the generation check).
Only found values are kept, so a key that does not exist (yet) is always asked again.

Rows are kept as `Snapshot`s (their columns) and handed out as fresh detached copies, as a closed
session leaves its rows: what one request does with its copy never reaches another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Table, event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.instrumentation import manager_of_class

from controlplane.db.models import Base

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R", bound=Base)
_TOUCHED = "shipyard.memo.touched"  # the tables a session's transaction wrote, in Session.info


class Memo(Generic[K, V]):
    """Values by key, read from `tables`, until a commit writes one of them."""

    def __init__(self, tables: Collection[str], max_size: int = 10_000) -> None:
        self.tables = frozenset(tables)
        self.max_size = max_size  # a bound, not a policy: the oldest entry goes first
        self._values: dict[K, V] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._values)

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The kept value, else `load()`'s (kept when found and nothing changed meanwhile)."""
        if key in self._values:
            return self._values[key]
        generation = self._generation
        value = await load()
        if value is not None and generation == self._generation:
            if len(self._values) >= self.max_size:
                del self._values[next(iter(self._values))]
            self._values[key] = value
        return value

    def clear(self) -> None:
        self._values.clear()
        self._generation += 1


@dataclass(frozen=True)
class Snapshot(Generic[R]):
    """A row's columns as it was loaded."""

    model: type[R]
    columns: dict[str, Any]

    @classmethod
    def of(cls, row: R) -> Snapshot[R]:
        names = [attr.key for attr in inspect(type(row)).column_attrs]
        return cls(type(row), {name: getattr(row, name) for name in names})

    def copy(self, **related: Any) -> R:
        """A detached row with these columns (and the relationships given, as loaded)."""
        row: R = manager_of_class(self.model).new_instance()
        # as the ORM's loading does: values put in the instance's dict are its loaded state
        row.__dict__.update(self.columns)
        for key, value in related.items():
            set_committed_value(row, key, value)
        make_transient_to_detached(row)
        return row


def session_class(memos: Collection[Memo[Any, Any]]) -> type[Session]:
    """A Session class whose commits clear each of `memos` whose tables they wrote."""
    watched = type("WatchedSession", (Session,), {})

    def note(session: Session, tables: Collection[str]) -> None:
        session.info.setdefault(_TOUCHED, set()).update(tables)

    @event.listens_for(watched, "do_orm_execute")
    def _statement(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            table = getattr(state.statement, "table", None)
            note(state.session, [table.name] if isinstance(table, Table) else ["*"])

    @event.listens_for(watched, "after_flush")
    def _flush(session: Session, _flush_context: UOWTransaction) -> None:
        changed = [*session.new, *session.dirty, *session.deleted]
        note(session, {getattr(type(row), "__tablename__", "*") for row in changed})

    @event.listens_for(watched, "after_commit")
    def _commit(session: Session) -> None:
        # rolled-back writes stay noted too: clearing once more than needed is harmless
        touched = session.info.pop(_TOUCHED, None)
        if touched:
            for memo in memos:
                if "*" in touched or memo.tables & touched:
                    memo.clear()

    return watched
