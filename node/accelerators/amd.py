"""The AMD plugin, through sysfs: the KFD topology the ROCm driver publishes
(/sys/class/kfd/kfd/topology/nodes/*/properties) finds the GPUs, each GPU's PCI device directory
gives its NUMA node, utilization (`gpu_busy_percent`) and memory in use (`mem_info_vram_*`).

A container gets `/dev/kfd` and the render nodes (/dev/dri/renderD*) of its GPUs only, the groups
owning them (the kernel runs as an unprivileged uid), and `ROCR_VISIBLE_DEVICES`. The installer's
detection (installer/_gpu.py) reads the same topology through these functions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.accelerators.base import (
    AcceleratorUnavailable,
    ContainerDevices,
    Device,
    DeviceSample,
)
from node.config import NodeConfig
from node.runtime import EngineInfo

NAME = "amd"
AMD_VENDOR = 0x1002


@dataclass(frozen=True)
class AmdGpu:
    node: int  # KFD topology node
    gfx: str  # e.g. gfx90a, gfx1100
    device_id: int
    compute_units: int
    vram_bytes: int | None
    render_minor: int | None = None  # /dev/dri/renderD<minor>
    unique_id: int = 0  # 0 where the driver does not publish one

    @property
    def id(self) -> str:
        """The device's id on this node (node.toml `gpus` names devices by it)."""
        return f"GPU-{self.unique_id:016x}" if self.unique_id else f"kfd-node-{self.node}"

    bus_id: str | None = None  # PCI domain:bus:device.function


def parse_kfd_properties(text: str) -> dict[str, int]:
    """`key value` lines of a KFD topology node's `properties` file."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1]):
            values[parts[0]] = int(parts[1])
    return values


def gfx_name(target_version: int) -> str:
    """KFD's gfx_target_version (major*10000 + minor*100 + stepping) as an ISA name:
    90010 -> gfx90a, 110000 -> gfx1100."""
    major, rest = divmod(target_version, 10000)
    minor, stepping = divmod(rest, 100)
    return f"gfx{major}{minor}{stepping:x}"


def _vram(node_dir: Path) -> int | None:
    total = 0
    for bank in sorted(node_dir.glob("mem_banks/*/properties")):
        props = parse_kfd_properties(bank.read_text())
        if props.get("heap_type") in (1, 2):  # HSA_HEAPTYPE_FRAME_BUFFER_PUBLIC/PRIVATE
            total += props.get("size_in_bytes", 0)
    return total or None


def _bus_id(props: dict[str, int]) -> str | None:
    """KFD's location_id is the PCI bus/device/function as (bus << 8) | (device << 3) | fn."""
    if "location_id" not in props:
        return None
    location = props["location_id"]
    bus, device, function = location >> 8, (location >> 3) & 0x1F, location & 0x7
    return f"{props.get('domain', 0):04x}:{bus:02x}:{device:02x}.{function:x}"


def amd_gpus_from_kfd(sysfs: Path) -> list[AmdGpu]:
    """GPU nodes of the KFD topology under `sysfs` (normally /sys): CPU nodes have no SIMDs."""
    nodes_dir = sysfs / "class/kfd/kfd/topology/nodes"
    gpus = []
    for props_file in sorted(nodes_dir.glob("*/properties"), key=lambda p: _number(p.parent)):
        props = parse_kfd_properties(props_file.read_text())
        if props.get("simd_count", 0) <= 0:
            continue
        if props.get("vendor_id", AMD_VENDOR) != AMD_VENDOR:
            continue
        simd_per_cu = props.get("simd_per_cu") or 4
        gpus.append(
            AmdGpu(
                node=_number(props_file.parent),
                gfx=gfx_name(props.get("gfx_target_version", 0)),
                device_id=props.get("device_id", 0),
                compute_units=props["simd_count"] // simd_per_cu,
                vram_bytes=_vram(props_file.parent),
                render_minor=props.get("drm_render_minor"),
                unique_id=props.get("unique_id", 0),
                bus_id=_bus_id(props),
            )
        )
    return gpus


def amd_drm_cards(sysfs: Path) -> list[str]:
    """DRM cards (card0, card1, ...) whose PCI vendor is AMD, whatever driver is loaded."""
    cards = []
    for vendor_file in sorted((sysfs / "class/drm").glob("card*/device/vendor")):
        card = vendor_file.parent.parent.name
        if not re.fullmatch(r"card\d+", card):
            continue  # connectors such as card0-DP-1
        try:
            vendor = int(vendor_file.read_text().strip(), 16)
        except ValueError:
            continue
        if vendor == AMD_VENDOR:
            cards.append(card)
    return cards


def _number(path: Path) -> int:
    return int(path.name) if path.name.isdigit() else -1


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class AmdPlugin:
    name = NAME
    slot = "rocm.device"
    fractional = False

    def __init__(self, sysfs: Path = Path("/sys"), dev: Path = Path("/dev")) -> None:
        self._sysfs = sysfs
        self._dev = dev
        gpus = [g for g in amd_gpus_from_kfd(sysfs) if g.render_minor is not None]
        if not gpus:
            cards = amd_drm_cards(sysfs)
            hint = (
                f"AMD card(s) {', '.join(cards)} have no ROCm compute: install the amdgpu driver"
                " with ROCm"
                if cards
                else "no AMD GPU with ROCm compute (no KFD topology)"
            )
            raise AcceleratorUnavailable(hint)
        self._gpus: dict[str, AmdGpu] = {}
        self._devices: list[Device] = []
        for gpu in gpus:
            uuid = gpu.id
            numa = _read_int(self._pci(gpu) / "numa_node") if gpu.bus_id else None
            self._gpus[uuid] = gpu
            self._devices.append(
                Device(
                    plugin=NAME,
                    id=uuid,
                    model=f"AMD {gpu.gfx} (device 0x{gpu.device_id:04x}, {gpu.compute_units} CUs)",
                    memory_bytes=gpu.vram_bytes or 0,
                    uuid=uuid,
                    bus_id=gpu.bus_id,
                    numa_node=numa if numa is not None and numa >= 0 else None,
                )
            )

    @classmethod
    def open(cls, config: NodeConfig, engine: EngineInfo) -> AmdPlugin:
        plugin = cls()
        if not (plugin._dev / "kfd").exists():
            raise AcceleratorUnavailable("the KFD topology lists AMD GPUs but /dev/kfd is missing")
        return plugin

    def _pci(self, gpu: AmdGpu) -> Path:
        return self._sysfs / "bus/pci/devices" / (gpu.bus_id or "")

    def devices(self) -> Sequence[Device]:
        return self._devices

    def metadata(self) -> dict[str, str]:
        version = self._sysfs / "module/amdgpu/version"
        return {"driver": version.read_text().strip() if version.exists() else "amdgpu"}

    def container_devices(self, devices: Sequence[Device]) -> ContainerDevices:
        nodes = [self._dev / "kfd"]
        nodes += [self._dev / f"dri/renderD{self._gpus[d.id].render_minor}" for d in devices]
        groups = []
        for node in nodes:
            try:
                groups.append(str(os.stat(node).st_gid))
            except OSError:
                continue  # checked again by the engine, which names the missing node
        return ContainerDevices(
            devices=tuple(f"{n}:{n}:rwm" for n in nodes),
            group_add=tuple(dict.fromkeys(g for g in groups if g != "0")),
            environment={
                # only these render nodes are in the container: ROCr numbers them from 0
                "ROCR_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(devices))),
            },
        )

    def sample(self) -> list[DeviceSample]:
        samples = []
        for device in self._devices:
            pci = self._pci(self._gpus[device.id])
            busy = _read_int(pci / "gpu_busy_percent")
            total = _read_int(pci / "mem_info_vram_total") or device.memory_bytes
            used = _read_int(pci / "mem_info_vram_used") or 0
            util = float(busy) if busy is not None else None
            samples.append(DeviceSample(NAME, device.id, util, used, total))
        return samples

    def close(self) -> None:
        pass
