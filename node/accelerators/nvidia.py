"""The NVIDIA plugin, through NVML (the `pynvml` module of nvidia-ml-py).

One NVML handle per node: initialised when the plugin opens, shut down when it closes; every
inventory and sample goes through it. A GPU in MIG mode offers its MIG instances, not itself.
Containers get their GPUs through the engine's device requests: the `nvidia` driver (the NVIDIA
container toolkit's runtime hook) by UUID, or CDI names (`nvidia.com/gpu=UUID`) where the node
is configured with `nvidia_cdi = true`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.accelerators.base import (
    AcceleratorUnavailable,
    ContainerDevices,
    Device,
    DeviceSample,
)
from node.config import NodeConfig
from node.runtime import DeviceRequest, EngineInfo

NAME = "nvidia"
_MIG_ENABLED = 1  # NVML_DEVICE_MIG_ENABLE


@dataclass(frozen=True)
class NvmlInventory:
    driver: str
    cuda: str  # "12.4", or "unknown"
    devices: list[Device]
    handles: dict[str, Any]  # device id -> NVML handle (GPU or MIG instance)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bus_id(raw: str) -> str:
    """NVML's '00000000:3B:00.0' as sysfs spells it: '0000:3b:00.0'."""
    domain, _, rest = raw.partition(":")
    return f"{int(domain, 16):04x}:{rest.lower()}" if rest else raw.lower()


def _numa_node(bus_id: str, sysfs: Path) -> int | None:
    try:
        node = int((sysfs / "bus/pci/devices" / bus_id / "numa_node").read_text())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None  # -1: a machine with one NUMA node


def read_inventory(nvml: Any, sysfs: Path = Path("/sys")) -> NvmlInventory:
    """Driver, CUDA version and devices through an initialised NVML (`nvml` is the pynvml module
    or a stand-in); NVMLError passes through."""
    driver = _text(nvml.nvmlSystemGetDriverVersion())
    try:
        raw = int(nvml.nvmlSystemGetCudaDriverVersion())
        cuda = f"{raw // 1000}.{raw % 1000 // 10}"
    except nvml.NVMLError:
        cuda = "unknown"
    devices: list[Device] = []
    handles: dict[str, Any] = {}
    for index in range(int(nvml.nvmlDeviceGetCount())):
        gpu = nvml.nvmlDeviceGetHandleByIndex(index)
        model = _text(nvml.nvmlDeviceGetName(gpu))
        bus_id = _bus_id(_text(nvml.nvmlDeviceGetPciInfo(gpu).busId))
        numa = _numa_node(bus_id, sysfs)
        for handle, mig in _instances(nvml, gpu):
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            devices.append(Device(NAME, uuid, model, memory, uuid, bus_id, numa, mig))
            handles[uuid] = handle
    return NvmlInventory(driver, cuda, devices, handles)


def _instances(nvml: Any, gpu: Any) -> list[tuple[Any, bool]]:
    """The GPU itself, or its MIG instances when MIG mode is on."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(gpu)
    except nvml.NVMLError:  # NOT_SUPPORTED: a GPU without MIG
        return [(gpu, False)]
    if current != _MIG_ENABLED:
        return [(gpu, False)]
    instances = []
    for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(gpu))):
        try:
            instances.append((nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, slot), True))
        except nvml.NVMLError:  # NOT_FOUND: an empty slot
            continue
    return instances


class NvidiaPlugin:
    name = NAME
    slot = "cuda.device"
    fractional = False

    def __init__(self, nvml: Any, *, cdi: bool, sysfs: Path = Path("/sys")) -> None:
        """`nvml` must be initialised; the plugin shuts it down on close."""
        self._nvml = nvml
        self._cdi = cdi
        self._inventory = read_inventory(nvml, sysfs)

    @classmethod
    def open(cls, config: NodeConfig, engine: EngineInfo, nvml: Any = None) -> NvidiaPlugin:
        if nvml is None:
            import pynvml

            nvml = pynvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise AcceleratorUnavailable(
                f"no NVIDIA driver (NVML: {exc}); install the NVIDIA driver to use NVIDIA GPUs"
            ) from exc
        try:
            if config.nvidia_cdi and not engine.cdi_spec_dirs:
                raise AcceleratorUnavailable(
                    "nvidia_cdi is set but the container engine reads no CDI specs; enable CDI"
                    " in the engine (Docker 25+: features.cdi) and generate the spec with"
                    " `nvidia-ctk cdi generate`"
                )
            if not config.nvidia_cdi and "nvidia" not in engine.runtimes:
                raise AcceleratorUnavailable(
                    "the container engine has no `nvidia` runtime: install the NVIDIA container"
                    " toolkit and run `nvidia-ctk runtime configure --runtime=docker`"
                )
            plugin = cls(nvml, cdi=config.nvidia_cdi)
        except BaseException:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()
            raise
        return plugin

    def devices(self) -> Sequence[Device]:
        return self._inventory.devices

    def metadata(self) -> dict[str, str]:
        return {"driver": self._inventory.driver, "cuda": self._inventory.cuda}

    def container_devices(self, devices: Sequence[Device]) -> ContainerDevices:
        ids = tuple(d.id for d in devices)
        if self._cdi:
            request = DeviceRequest("cdi", tuple(f"nvidia.com/gpu={i}" for i in ids))
        else:
            request = DeviceRequest("nvidia", ids, (("gpu",),))
        return ContainerDevices(
            device_requests=(request,),
            environment={
                "NVIDIA_VISIBLE_DEVICES": ",".join(ids),
                "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
                # the container sees only its GPUs, numbered from 0
                "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(ids))),
            },
        )

    def sample(self) -> list[DeviceSample]:
        nvml = self._nvml
        samples = []
        for device in self._inventory.devices:
            handle = self._inventory.handles[device.id]
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                util: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:  # MIG instances have no utilization counter
                util = None
            samples.append(DeviceSample(NAME, device.id, util, int(memory.used), int(memory.total)))
        return samples

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()
