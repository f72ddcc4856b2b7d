"""Resource slots: named quantities (cpu cores, mem bytes, accelerators) and their arithmetic.

On the wire slots are `{"cpu": "2", "mem": "536870912"}` — strings, as Backend.AI sends them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation

_ZERO = Decimal(0)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


class SlotsError(ValueError):
    """A slot value that cannot be read; the message says which and why."""


def parse_size(value: str | int) -> int:
    """Bytes from `536870912`, `512m`, `512MiB`, `1g`, `1.5G` (binary units)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise SlotsError(f"cannot read {value!r} as a size; use e.g. 512m or 2g")
    number, unit = match.groups()
    return int(Decimal(number) * _UNITS[unit.lower()])


def format_bytes(n: int | Decimal) -> str:
    """Human size with binary units: 134217728 -> '128 MiB'."""
    value = Decimal(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            text = f"{value:.1f}".rstrip("0").rstrip(".") if unit != "B" else str(int(value))
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class Slots(Mapping[str, Decimal]):
    """An immutable mapping of slot name to quantity. Missing names count as zero."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Decimal | int | str] | None = None) -> None:
        self._data: dict[str, Decimal] = {}
        for key, value in (data or {}).items():
            is_size = key == "mem" and not isinstance(value, Decimal)
            quantity = parse_size(value) if is_size else value  # type: ignore[arg-type]
            try:
                self._data[key] = Decimal(str(quantity))
            except InvalidOperation as exc:
                raise SlotsError(f"slot {key!r}: {value!r} is not a number") from exc
            if not self._data[key].is_finite():
                raise SlotsError(f"slot {key!r}: {value!r} is not a finite number")
            if self._data[key] < 0:
                raise SlotsError(f"slot {key!r} must not be negative")

    @classmethod
    def from_wire(cls, data: Mapping[str, str | int | float] | None) -> Slots:
        return cls({k: str(v) for k, v in (data or {}).items()})

    def to_wire(self) -> dict[str, str]:
        return {k: _plain(v) for k, v in sorted(self._data.items())}

    def __getitem__(self, key: str) -> Decimal:
        return self._data.get(key, _ZERO)

    def __contains__(self, key: object) -> bool:  # named ones only, though any reads as 0
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @classmethod
    def _checked(cls, data: dict[str, Decimal]) -> Slots:
        """Slots from values already read and checked (the results of arithmetic on Slots):
        the scheduler does this arithmetic for every placement."""
        slots = cls.__new__(cls)
        slots._data = data
        return slots

    def __add__(self, other: Slots) -> Slots:
        data = dict(self._data)
        for k, v in other._data.items():
            data[k] = data.get(k, _ZERO) + v
        return Slots._checked(data)

    def __sub__(self, other: Slots) -> Slots:
        data = dict(self._data)
        for k, v in other._data.items():
            data[k] = max(_ZERO, data.get(k, _ZERO) - v)
        return Slots._checked(data)

    def fits_in(self, capacity: Slots) -> bool:
        have = capacity._data
        return all(v <= have.get(k, _ZERO) for k, v in self._data.items() if v > 0)

    def shortfall(self, capacity: Mapping[str, Decimal]) -> list[str]:
        """Names of the slots this request needs more of than `capacity` has."""
        return sorted(k for k, v in self._data.items() if v > capacity.get(k, Decimal(0)))

    def describe(self) -> str:
        parts = []
        for key, value in sorted(self._data.items()):
            parts.append(
                f"{key}={format_bytes(value)}" if key == "mem" else f"{key}={_plain(value)}"
            )
        return " ".join(parts) or "nothing"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        keys = set(self) | set(other)
        return all(self[k] == other.get(k, Decimal(0)) for k in keys)

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, v) for k, v in self._data.items() if v)))

    def __repr__(self) -> str:
        return f"Slots({self.to_wire()!r})"


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text
