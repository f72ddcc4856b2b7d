"""Accelerator plugins: found through the `shipyard.accelerators` entry points, opened once per
node (node.toml's `accelerators` names them; unset, every installed plugin but the mock one whose
hardware is present), and the allocator that hands their devices to kernels.

Opening a plugin does blocking I/O (NVML, sysfs): the agent calls `Accelerators.open` in a worker
thread, once, and `close()` when it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from importlib.metadata import entry_points

from node.accelerators.allocator import Allocation, Allocator, DevicesUnavailable
from node.accelerators.base import (
    AcceleratorPlugin,
    AcceleratorUnavailable,
    ContainerDevices,
    Device,
    DeviceSample,
    PluginFactory,
    SlotType,
)
from node.config import NodeConfig
from node.errors import NodeError
from node.runtime import EngineInfo

log = logging.getLogger("shipyard.node.accelerators")

ENTRY_POINT_GROUP = "shipyard.accelerators"
NOT_AUTO = frozenset({"mock"})  # never opened unless node.toml lists it

__all__ = [
    "AcceleratorPlugin",
    "AcceleratorUnavailable",
    "Accelerators",
    "Allocation",
    "Allocator",
    "ContainerDevices",
    "Device",
    "DeviceSample",
    "DevicesUnavailable",
    "PluginFactory",
    "SlotType",
    "installed",
]


def installed() -> dict[str, PluginFactory]:
    """The plugins installed in this Python environment, by name (loading imports them)."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


class Restricted:
    """A plugin seen through node.toml's `gpus`: only the devices listed there exist for the
    node (the allocator, Register and the statistics)."""

    def __init__(self, plugin: AcceleratorPlugin, allowed: frozenset[str]) -> None:
        self._plugin = plugin
        self._allowed = allowed
        self.name = plugin.name
        self.slot = plugin.slot
        self.fractional = plugin.fractional
        self._devices = [d for d in plugin.devices() if d.id in allowed]

    def devices(self) -> Sequence[Device]:
        return self._devices

    def metadata(self) -> dict[str, str]:
        return self._plugin.metadata()

    def container_devices(self, devices: Sequence[Device]) -> ContainerDevices:
        return self._plugin.container_devices(devices)

    def sample(self) -> list[DeviceSample]:
        return [s for s in self._plugin.sample() if s.device_id in self._allowed]

    def close(self) -> None:
        self._plugin.close()


class Accelerators:
    """The node's open plugins and its allocator."""

    def __init__(self, plugins: Sequence[AcceleratorPlugin]) -> None:
        slots = [p.slot for p in plugins]
        if len(set(slots)) != len(slots):
            raise NodeError(f"two accelerator plugins offer the same slot: {slots}")
        self.plugins = list(plugins)
        self.allocator = Allocator(self.plugins)

    @classmethod
    def open(cls, config: NodeConfig, engine: EngineInfo) -> Accelerators:
        """NodeError when a plugin node.toml lists is not installed or cannot open."""
        factories = installed()
        wanted = config.accelerators
        if wanted is not None:
            unknown = sorted(set(wanted) - set(factories))
            if unknown:
                raise NodeError(
                    f"accelerators: no plugin named {', '.join(unknown)} is installed"
                    f" (installed: {', '.join(sorted(factories)) or 'none'})"
                )
        names = wanted if wanted is not None else sorted(set(factories) - NOT_AUTO)
        plugins: list[AcceleratorPlugin] = []
        try:
            for name in names:
                try:
                    plugin = factories[name](config, engine)
                except AcceleratorUnavailable as exc:
                    if wanted is not None:
                        raise NodeError(f"accelerator plugin {name!r}: {exc}") from exc
                    log.info("accelerator plugin %r not used: %s", name, exc)
                    continue
                if config.gpus is not None:
                    plugin = Restricted(plugin, frozenset(config.gpus))
                plugins.append(plugin)
                log.info(
                    "accelerator plugin %r: %d device(s) as %s",
                    name, len(plugin.devices()), plugin.slot,
                )  # fmt: skip
            return cls(plugins)
        except BaseException:
            for plugin in plugins:
                plugin.close()
            raise

    def capacity(self) -> dict[str, Decimal]:
        return self.allocator.capacity()

    def devices(self) -> list[Device]:
        return [d for p in self.plugins for d in p.devices()]

    def metadata(self) -> dict[str, dict[str, str]]:
        return {p.name: p.metadata() for p in self.plugins}

    def sample(self) -> list[DeviceSample]:
        return [s for p in self.plugins for s in p.sample()]

    def close(self) -> None:
        for plugin in self.plugins:
            plugin.close()
