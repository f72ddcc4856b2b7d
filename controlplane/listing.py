"""The `filter` and `order` expressions of paginated lists (GraphQL `*_list(filter, order)`).

Backend.AI has a mini-language for these; Shipyard understands a documented subset of it:

    filter:  CONDITION [& CONDITION ...]
             CONDITION = FIELD == VALUE | FIELD != VALUE | FIELD in [VALUE, ...]
                         | FIELD not in [VALUE, ...]
             VALUE     = "a string" | 'a string' | true | false | null | an integer
    order:   [+|-]FIELD[, [+|-]FIELD ...]     (+ ascending, the default; - descending)

Each list says which fields it allows. Anything else is refused with a message that says what
is supported, never ignored. Conditions become SQL (`where`) or are checked on plain records
(`matches`) where a value is computed rather than stored.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, UnaryExpression
from sqlalchemy.orm import QueryableAttribute

from controlplane.errors import InvalidAPIParams

Scalar = str | int | bool | None
Column = ColumnElement[Any] | QueryableAttribute[Any]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|&|\[|\]|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*|-?\d+)
    )""",
    re.VERBOSE,
)
FILTER_HELP = (
    'supported: FIELD == "value", FIELD != "value", FIELD in ["a", "b"], FIELD not in [...],'
    " joined with &"
)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # "==" | "!=" | "in" | "not in"
    values: tuple[Scalar, ...]  # one value for == and !=


@dataclass(frozen=True)
class Ordering:
    field: str
    descending: bool = False


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidAPIParams(f"cannot read the filter at {text[pos:]!r}; {FILTER_HELP}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _value(kind: str, text: str) -> Scalar:
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if kind == "word":
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if re.fullmatch(r"-?\d+", text):
            number = int(text) if len(text) <= 20 else None
            if number is None or not -(2**63) <= number < 2**63:
                # the database's integers are 64-bit: a bigger one matches nothing anyway
                raise InvalidAPIParams(f"{text[:24]!r} is not a 64-bit integer")
            return number
    raise InvalidAPIParams(f'{text!r} is not a value: quote strings, e.g. "RUNNING"')


def parse_filter(text: str | None, fields: Collection[str]) -> list[Condition]:
    """The conditions of a filter expression; [] for None or an empty string."""
    if text is None or not text.strip():
        return []
    tokens = _tokens(text)
    conditions: list[Condition] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens):
            raise InvalidAPIParams(f"the filter {text!r} ends too early; {FILTER_HELP}")
        i += 1
        return tokens[i - 1]

    while True:
        kind, field = take()
        if kind != "word" or field not in fields:
            raise InvalidAPIParams(
                f"cannot filter on {field!r}; filterable fields: {', '.join(sorted(fields))}"
            )
        kind, op = take()
        if op == "not":
            kind, word = take()
            op = "not in" if word == "in" else f"not {word}"
        if op in ("==", "!="):
            conditions.append(Condition(field, op, (_value(*take()),)))
        elif op in ("in", "not in"):
            if take() != ("op", "["):
                raise InvalidAPIParams(f'{field} {op} needs a list like ["a", "b"]')
            values: list[Scalar] = []
            while True:
                values.append(_value(*take()))
                sep = take()
                if sep == ("op", "]"):
                    break
                if sep != ("op", ","):
                    raise InvalidAPIParams(f"separate the values of {field} {op} with commas")
            conditions.append(Condition(field, op, tuple(values)))
        else:
            raise InvalidAPIParams(f"unsupported operator {op!r} in the filter; {FILTER_HELP}")
        if i == len(tokens):
            return conditions
        if take() != ("op", "&"):
            raise InvalidAPIParams(f"join conditions with &; {FILTER_HELP}")


def parse_order(text: str | None, fields: Collection[str]) -> list[Ordering]:
    """The orderings of an order expression; [] for None or an empty string."""
    if text is None or not text.strip():
        return []
    orderings = []
    for part in text.split(","):
        part = part.strip()
        descending = part.startswith("-")
        name = part.lstrip("+-").strip()
        if name not in fields:
            raise InvalidAPIParams(
                f"cannot order by {name!r}; use [+|-]FIELD with one of: {', '.join(sorted(fields))}"
            )
        orderings.append(Ordering(name, descending))
    return orderings


def where(
    conditions: Sequence[Condition],
    columns: Mapping[str, Column],
) -> list[ColumnElement[bool]]:
    """SQL clauses for the conditions; `columns` maps each allowed field to its column."""
    clauses: list[ColumnElement[bool]] = []
    for c in conditions:
        column = columns[c.field]
        if c.op == "==":
            clauses.append(column.is_(None) if c.values[0] is None else column == c.values[0])
        elif c.op == "!=":
            clauses.append(column.is_not(None) if c.values[0] is None else column != c.values[0])
        elif c.op == "in":
            clauses.append(column.in_(c.values))
        else:
            clauses.append(column.not_in(c.values))
    return clauses


def order_by(
    orderings: Sequence[Ordering],
    columns: Mapping[str, Column],
) -> list[UnaryExpression[Any]]:
    return [columns[o.field].desc() if o.descending else columns[o.field].asc() for o in orderings]


def matches(conditions: Sequence[Condition], record: Mapping[str, Any]) -> bool:
    """Whether a plain record (field -> value) satisfies every condition."""
    for c in conditions:
        value = record[c.field]
        if c.op == "==" and value != c.values[0]:
            return False
        if c.op == "!=" and value == c.values[0]:
            return False
        if c.op == "in" and value not in c.values:
            return False
        if c.op == "not in" and value in c.values:
            return False
    return True


def sort_records(
    records: Sequence[dict[str, Any]], orderings: Sequence[Ordering]
) -> list[dict[str, Any]]:
    """`records` sorted by `orderings` (stable passes from the last key; None sorts first)."""
    result = list(records)
    for o in reversed(orderings):
        result.sort(
            key=lambda r, f=o.field: (r[f] is not None, r[f]),  # type: ignore[misc]
            reverse=o.descending,
        )
    return result


def page_bounds(limit: int, offset: int) -> tuple[int, int]:
    """Checked (limit, offset): the official client pages with 1 <= limit <= 100."""
    if not 1 <= limit <= 100:
        raise InvalidAPIParams(f"limit must be between 1 and 100, not {limit}")
    if offset < 0:
        raise InvalidAPIParams(f"offset must be 0 or more, not {offset}")
    return limit, offset
