"""The filter/order mini-language of paginated lists (controlplane/listing.py)."""

from __future__ import annotations

import pytest

from controlplane.errors import InvalidAPIParams
from controlplane.listing import (
    Condition,
    Ordering,
    matches,
    parse_filter,
    parse_order,
    sort_records,
)

FIELDS = ("name", "status", "is_admin", "size")


def test_conditions_values_and_conjunctions() -> None:
    assert parse_filter(None, FIELDS) == []
    assert parse_filter("  ", FIELDS) == []
    assert parse_filter(
        'status == "RUNNING" & name != \'a "quoted" one\' & is_admin == true', FIELDS
    ) == [
        Condition("status", "==", ("RUNNING",)),
        Condition("name", "!=", ('a "quoted" one',)),
        Condition("is_admin", "==", (True,)),
    ]
    assert parse_filter('size in [1, -2] & name not in ["x\\"y", null]', FIELDS) == [
        Condition("size", "in", (1, -2)),
        Condition("name", "not in", ('x"y', None)),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('colour == "red"', "cannot filter on 'colour'"),
        ('status >= "A"', "cannot read the filter"),
        ('status like "A%"', "unsupported operator 'like'"),
        ("status == RUNNING", "is not a value"),
        ('status == "A" status == "B"', "join conditions with &"),
        ('status == "A" &', "ends too early"),
        ('status in "A"', "needs a list"),
        ('status in ["A" "B"]', "separate the values"),
    ],
)
def test_what_is_not_supported_says_so(text: str, message: str) -> None:
    with pytest.raises(InvalidAPIParams) as caught:
        parse_filter(text, FIELDS)
    assert message in caught.value.msg


def test_orderings_and_sorting_records() -> None:
    assert parse_order(None, FIELDS) == []
    assert parse_order("-size, +name,status", FIELDS) == [
        Ordering("size", True),
        Ordering("name", False),
        Ordering("status", False),
    ]
    with pytest.raises(InvalidAPIParams, match="cannot order by"):
        parse_order("-colour", FIELDS)
    records = [
        {"name": "b", "size": 1},
        {"name": "a", "size": 2},
        {"name": "c", "size": None},
        {"name": "a", "size": 1},
    ]
    ordered = sort_records(records, [Ordering("name"), Ordering("size", True)])
    assert [(r["name"], r["size"]) for r in ordered] == [("a", 2), ("a", 1), ("b", 1), ("c", None)]
    assert matches([Condition("size", "in", (1, 2))], records[0])
    assert not matches([Condition("name", "not in", ("b",))], records[0])
