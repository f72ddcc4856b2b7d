"""Choosing a node of one scaling group for a request, during one scheduling pass.

The pool keeps its nodes sorted by free memory (then cpu), so that the emptiest (`dispersed`)
or the fullest that can still take the request (`concentrated`) is found without looking at
every node; a node is skipped when it lacks the image or another slot (cpu, a GPU). Within a
pass free capacity only shrinks, so a request shape that fitted nowhere is not tried again.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from decimal import Decimal

import wire
from controlplane.ledger import Ledger
from controlplane.nodehub import NodeFacts

_Entry = tuple[Decimal, Decimal, str]  # free mem, free cpu, node id


class NodePool:
    def __init__(
        self,
        nodes: dict[str, NodeFacts],
        ledger: Ledger,
        *,
        spread: str = "dispersed",
    ) -> None:
        self._capacity = {n: facts.slots for n, facts in nodes.items()}
        self._free = {n: _free(cap, ledger.used_on(n)) for n, cap in self._capacity.items()}
        self._sorted: list[_Entry] = sorted(_entry(n, f) for n, f in self._free.items())
        self._images = {n: facts.images for n, facts in nodes.items()}
        self._concentrated = spread == "concentrated"
        self._failed: dict[tuple[str, wire.Slots], str] = {}

    def capacity(self) -> wire.Slots:
        total = wire.Slots()
        for capacity in self._capacity.values():
            total = total + capacity
        return total

    def choose(self, image: str, request: wire.Slots) -> tuple[str | None, str]:
        """A node for `request`, or None and why none."""
        known = self._failed.get((image, request))
        if known is not None:
            return None, known
        for node_id in self._candidates(request["mem"]):
            if image in self._images.get(node_id, ()) and request.fits_in(self._free[node_id]):
                return node_id, ""
        reason = self._why_not(image, request)
        self._failed[(image, request)] = reason
        return None, reason

    def charge(self, node_id: str, request: wire.Slots) -> None:
        free = self._free[node_id]
        del self._sorted[bisect.bisect_left(self._sorted, _entry(node_id, free))]
        self._free[node_id] = free - request
        bisect.insort(self._sorted, _entry(node_id, self._free[node_id]))

    def _candidates(self, mem: Decimal) -> Iterator[str]:
        """Nodes with at least `mem` free, fullest first (concentrated) or emptiest first."""
        start = bisect.bisect_left(self._sorted, (mem,))
        end = len(self._sorted)
        for i in range(start, end) if self._concentrated else range(end - 1, start - 1, -1):
            yield self._sorted[i][2]

    def _why_not(self, image: str, request: wire.Slots) -> str:
        if not self._free:
            return "waiting for a node to connect"
        holders = [n for n in self._free if image in self._images.get(n, ())]
        if not holders:
            return f"waiting for a connected node that has the image {image}"
        best = max(holders, key=lambda n: (self._free[n]["mem"], self._free[n]["cpu"], n))
        short = ", ".join(request.shortfall(self._free[best]))
        return (
            f"waiting for resources: needs {request.describe()}; node {best} has"
            f" {self._free[best].describe()} free (short of {short})"
        )


def _free(capacity: wire.Slots, used: wire.Slots) -> wire.Slots:
    return capacity - used if used else capacity  # most of a thousand nodes hold nothing


def _entry(node_id: str, free: wire.Slots) -> _Entry:
    return (free["mem"], free["cpu"], node_id)
