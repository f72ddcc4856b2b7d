"""The mock accelerator plugin: fake devices read from a TOML file, for tests and demos.

Nothing here touches hardware. A container given mock devices sees their ids in
`SHIPYARD_MOCK_DEVICES` (and CUDA-style ordinals in `CUDA_VISIBLE_DEVICES`), so a session can
check what it was given; utilization and memory in use are whatever the file says.

    # mock-devices.toml (node.toml: accelerators = ["mock"], mock_devices = "mock-devices.toml")
    slot = "cuda.device"          # or "cuda.shares" to hand out fractions
    [[devices]]
    id = "mock-gpu0"
    memory = "16g"
    util_pct = 40.0               # optional, default 0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Annotated, Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from hostlib import ConfigError, load_config
from node.accelerators.base import (
    AcceleratorUnavailable,
    ContainerDevices,
    Device,
    DeviceSample,
)
from node.config import NodeConfig
from node.runtime import EngineInfo
from wire import Slots, SlotsError

NAME = "mock"
MODEL = "Shipyard mock GPU"


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class MockDevice:
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    memory: str = "16g"
    model: str = MODEL
    bus_id: str | None = None
    numa_node: int | None = None
    util_pct: Annotated[float, Field(ge=0, le=100)] = 0.0
    mem_used: str = "0"


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class MockDevicesFile:
    slot: Literal["cuda.device", "cuda.shares"] = "cuda.device"
    devices: list[MockDevice] = field(default_factory=list)


class MockPlugin:
    name = NAME

    def __init__(self, spec: MockDevicesFile) -> None:
        ids = [d.id for d in spec.devices]
        if len(set(ids)) != len(ids):
            raise AcceleratorUnavailable(f"mock devices: ids must be distinct, got {ids}")
        self.slot = spec.slot
        self.fractional = spec.slot == "cuda.shares"
        self._spec = spec
        self._devices = [
            Device(
                plugin=NAME,
                id=d.id,
                model=d.model if "mock" in d.model.lower() else f"{d.model} (mock)",
                memory_bytes=_bytes(d.memory),
                uuid=f"MOCK-{d.id}",
                bus_id=d.bus_id,
                numa_node=d.numa_node,
            )
            for d in spec.devices
        ]

    @classmethod
    def open(cls, config: NodeConfig, engine: EngineInfo) -> MockPlugin:
        if config.mock_devices is None:
            raise AcceleratorUnavailable(
                "the mock accelerator plugin needs mock_devices (a TOML file of fake devices)"
                " in the node's configuration"
            )
        try:
            return cls(load_config(config.mock_devices, MockDevicesFile))
        except ConfigError as exc:
            raise AcceleratorUnavailable(f"mock devices: {exc}") from exc

    def devices(self) -> Sequence[Device]:
        return self._devices

    def metadata(self) -> dict[str, str]:
        return {"driver": "mock", "devices_file": "yes"}

    def container_devices(self, devices: Sequence[Device]) -> ContainerDevices:
        return ContainerDevices(
            environment={
                "SHIPYARD_MOCK_DEVICES": ",".join(d.id for d in devices),
                "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(devices))),
            }
        )

    def sample(self) -> list[DeviceSample]:
        return [
            DeviceSample(NAME, d.id, d.util_pct, _bytes(d.mem_used), _bytes(d.memory))
            for d in self._spec.devices
        ]

    def close(self) -> None:
        pass


def _bytes(size: str) -> int:
    try:
        return int(Slots({"mem": size})["mem"])
    except SlotsError as exc:
        raise AcceleratorUnavailable(f"mock devices: {exc}") from exc
