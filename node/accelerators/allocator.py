"""Which kernel holds which accelerator devices on this node.

Whole-device slots (`cuda.device`, `rocm.device`) hand out distinct free devices; fractional
slots (`cuda.shares`) hand out parts of devices, whole free devices first for the integral part,
then the remainder from the device with the least room that still fits it. A device is never
given beyond its one share. What a kernel holds is written into a container label
(`label_value`) so that a restarted node rebuilds the table from its containers (`restore`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from node.accelerators.base import AcceleratorPlugin, ContainerDevices, Device
from node.errors import NodeError

ONE = Decimal(1)


class DevicesUnavailable(NodeError):
    """A kernel asked for devices this node does not have free, or does not have at all."""


@dataclass(frozen=True)
class Allocation:
    kernel_id: str
    shares: dict[str, dict[str, Decimal]]  # plugin -> device id -> share (1 = the whole device)
    container: ContainerDevices  # what the container create call adds

    def label_value(self) -> str:
        return json.dumps(
            {p: {d: str(s) for d, s in devs.items()} for p, devs in self.shares.items()},
            sort_keys=True,
        )


class Allocator:
    def __init__(self, plugins: Sequence[AcceleratorPlugin]) -> None:
        self._plugins = {p.name: p for p in plugins}
        self._by_slot = {p.slot: p for p in plugins}
        self._held: dict[str, dict[str, dict[str, Decimal]]] = {}  # kernel -> plugin -> dev

    @property
    def slots(self) -> frozenset[str]:
        return frozenset(self._by_slot)

    def capacity(self) -> dict[str, Decimal]:
        return {slot: Decimal(len(p.devices())) for slot, p in self._by_slot.items()}

    def occupied(self) -> dict[str, Decimal]:
        totals = dict.fromkeys(self._by_slot, Decimal(0))
        for held in self._held.values():
            for name, devices in held.items():
                totals[self._plugins[name].slot] += sum(devices.values(), Decimal(0))
        return totals

    def held(self, kernel_id: str) -> dict[str, dict[str, Decimal]]:
        return self._held.get(kernel_id, {})

    def _used(self, plugin: str) -> dict[str, Decimal]:
        used: dict[str, Decimal] = {}
        for held in self._held.values():
            for device, share in held.get(plugin, {}).items():
                used[device] = used.get(device, Decimal(0)) + share
        return used

    def allocate(self, kernel_id: str, slots: Mapping[str, Decimal]) -> Allocation:
        """Devices for every accelerator slot in `slots` (cpu and mem are not ours), all or
        none; DevicesUnavailable saying what is missing."""
        if kernel_id in self._held:
            raise DevicesUnavailable(f"kernel {kernel_id} already holds devices")
        shares: dict[str, dict[str, Decimal]] = {}
        for slot, amount in sorted(slots.items()):
            if slot in ("cpu", "mem") or amount == 0:
                continue
            plugin = self._by_slot.get(slot)
            if plugin is None:
                offered = ", ".join(sorted(self._by_slot)) or "none"
                raise DevicesUnavailable(
                    f"this node has no {slot} devices (its accelerator slots: {offered})"
                )
            shares[plugin.name] = self._pick(plugin, amount)
        self._held[kernel_id] = shares
        return self._allocation(kernel_id, shares)

    def _pick(self, plugin: AcceleratorPlugin, amount: Decimal) -> dict[str, Decimal]:
        if not plugin.fractional and amount != amount.to_integral_value():
            raise DevicesUnavailable(f"{plugin.slot} counts whole devices, not {amount}")
        used = self._used(plugin.name)
        free = {d.id: ONE - used.get(d.id, Decimal(0)) for d in plugin.devices()}
        whole = [d for d, room in free.items() if room == ONE]
        wanted_whole = int(amount)  # the integral part, as whole devices
        remainder = amount - wanted_whole
        picked = {d: ONE for d in whole[:wanted_whole]}
        if remainder:
            # the fullest device that still fits, so that whole devices stay whole
            fits = sorted(
                (room, d) for d, room in free.items() if d not in picked and room >= remainder
            )
            if fits:
                picked[fits[0][1]] = remainder
        if len(picked) < wanted_whole + (1 if remainder else 0):
            total = len(free)
            room = sum(free.values(), Decimal(0))
            raise DevicesUnavailable(
                f"not enough free {plugin.slot}: asked for {amount}, {room.normalize()} of"
                f" {total} free on this node"
            )
        return picked

    def _allocation(self, kernel_id: str, shares: dict[str, dict[str, Decimal]]) -> Allocation:
        container = ContainerDevices()
        for name, held in shares.items():
            plugin = self._plugins[name]
            devices: list[Device] = [d for d in plugin.devices() if d.id in held]
            container = container + plugin.container_devices(devices)
        return Allocation(kernel_id, shares, container)

    def reset(self) -> None:
        """Forget every holder (before `restore` from the containers that exist now)."""
        self._held.clear()

    def release(self, kernel_id: str) -> None:
        self._held.pop(kernel_id, None)

    def restore(self, kernel_id: str, label_value: str) -> None:
        """Hold again what a container's label says (node restart); devices or plugins that
        are gone meanwhile are dropped. NodeError for a label that is not ours."""
        try:
            raw = json.loads(label_value)
            shares = {
                str(p): {str(d): Decimal(s) for d, s in devs.items()} for p, devs in raw.items()
            }
        except (ValueError, AttributeError, InvalidOperation) as exc:
            raise NodeError(f"kernel {kernel_id}: unreadable label {label_value!r}") from exc
        kept = {}
        for name, devices in shares.items():
            plugin = self._plugins.get(name)
            if plugin is None:
                continue
            known = {d.id for d in plugin.devices()}
            kept[name] = {d: s for d, s in devices.items() if d in known}
        self._held[kernel_id] = kept
