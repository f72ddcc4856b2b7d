"""What an accelerator plugin is: the devices it found, the slot they fill, what a container
needs to see the ones it was given, and how busy each one is.

Every value here is a plain frozen dataclass, ready to be put on the wire as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from node.config import NodeConfig
from node.errors import NodeError
from node.runtime import DeviceRequest, EngineInfo

SlotType = Literal["count", "bytes", "unique"]


class AcceleratorUnavailable(NodeError):
    """A plugin's hardware, driver or container toolkit is missing; str() says which and what to
    install. Auto-detection skips such a plugin; a node configured to use it refuses to start."""


@dataclass(frozen=True)
class Device:
    plugin: str  # the plugin's name: "nvidia", "amd", "mock"
    id: str  # stable on this node: a GPU UUID, a KFD node's unique id, a mock name
    model: str
    memory_bytes: int
    uuid: str
    bus_id: str | None = None  # PCI domain:bus:device.function
    numa_node: int | None = None
    mig: bool = False  # an NVIDIA MIG instance rather than a whole GPU


@dataclass(frozen=True)
class ContainerDevices:
    """What a container create call gets so that the allocated devices, and only they, are
    visible inside: engine device requests, host device nodes, groups and environment."""

    device_requests: tuple[DeviceRequest, ...] = ()
    devices: tuple[str, ...] = ()  # "/dev/kfd:/dev/kfd:rwm" (host:container:permissions)
    group_add: tuple[str, ...] = ()  # numeric gids owning those device nodes
    environment: dict[str, str] = field(default_factory=dict)

    def __add__(self, other: ContainerDevices) -> ContainerDevices:
        return ContainerDevices(
            self.device_requests + other.device_requests,
            tuple(dict.fromkeys(self.devices + other.devices)),
            tuple(dict.fromkeys(self.group_add + other.group_add)),
            {**self.environment, **other.environment},
        )


@dataclass(frozen=True)
class DeviceSample:
    plugin: str
    device_id: str
    util_pct: float | None  # 0-100 over the driver's last period; None: the driver does not say
    mem_used: int  # bytes
    mem_total: int  # bytes


class AcceleratorPlugin(Protocol):
    """An open plugin: it owns its driver handle until `close()`."""

    name: str  # "nvidia": also the entry point's name and what node.toml's `accelerators` lists
    slot: str  # the slot its devices fill: "cuda.device", "cuda.shares", "rocm.device"
    fractional: bool  # True: a kernel may take part of a device (slot type count, decimal)

    def devices(self) -> Sequence[Device]: ...

    def metadata(self) -> dict[str, str]:
        """Driver and runtime versions, for the node's hardware metadata."""
        ...

    def container_devices(self, devices: Sequence[Device]) -> ContainerDevices: ...

    def sample(self) -> list[DeviceSample]: ...

    def close(self) -> None: ...


class PluginFactory(Protocol):
    """What a `shipyard.accelerators` entry point names: opens the plugin for this node, or
    raises AcceleratorUnavailable."""

    def __call__(self, config: NodeConfig, engine: EngineInfo) -> AcceleratorPlugin: ...
