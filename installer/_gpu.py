"""Accelerators: NVIDIA through NVML (pynvml, from the nvidia-ml-py package), AMD through sysfs
(the KFD topology the ROCm driver publishes, and DRM cards whose PCI vendor is 0x1002).

No driver is a finding ("info"), never an error: most machines have no GPU.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer._report import Finding

AMD_VENDOR = 0x1002


# --- NVIDIA ------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvidia_findings(nvml: Any = None) -> list[Finding]:
    """What NVML says; `nvml` is the pynvml module (tests pass a stand-in)."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return [
                Finding(
                    "nvidia",
                    None,
                    "info",
                    "the NVML bindings (nvidia-ml-py) are not installed, so NVIDIA GPUs cannot"
                    " be detected",
                )
            ]
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return [Finding("nvidia", None, "info", f"no NVIDIA driver/NVML library: {exc}")]
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            cuda_raw = int(nvml.nvmlSystemGetCudaDriverVersion())
            cuda = f"{cuda_raw // 1000}.{cuda_raw % 1000 // 10}"
        except nvml.NVMLError:
            cuda = "unknown"
        findings = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            findings.append(
                Finding(
                    f"nvidia gpu {index}",
                    {"name": name, "memory_bytes": memory, "uuid": uuid},
                    "ok",
                    f"{name}, {memory / 2**30:.0f} GiB",
                )
            )
    except nvml.NVMLError as exc:
        return [Finding("nvidia", None, "warning", f"NVML answered, then failed: {exc}")]
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
    summary = Finding(
        "nvidia",
        {"driver": driver, "cuda": cuda, "count": len(findings)},
        "ok" if findings else "info",
        f"driver {driver} (CUDA {cuda}), {len(findings)} GPU(s)",
    )
    return [summary, *findings]


# --- AMD ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AmdGpu:
    node: int  # KFD topology node
    gfx: str  # e.g. gfx90a, gfx1100
    device_id: int
    compute_units: int
    vram_bytes: int | None


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


def amd_findings(sysfs: Path = Path("/sys")) -> list[Finding]:
    cards = amd_drm_cards(sysfs)
    gpus = amd_gpus_from_kfd(sysfs)
    if not gpus:
        if cards:
            return [
                Finding(
                    "amd",
                    {"cards": cards},
                    "warning",
                    f"AMD graphics card(s) {', '.join(cards)} but no ROCm compute (no KFD"
                    " topology): install the amdgpu driver with ROCm to use them",
                )
            ]
        return [Finding("amd", None, "info", "no AMD GPU (no KFD topology, no AMD DRM card)")]
    findings = [
        Finding(
            "amd",
            {"count": len(gpus), "cards": cards},
            "ok",
            f"{len(gpus)} AMD GPU(s) with ROCm compute (KFD)",
        )
    ]
    for index, gpu in enumerate(gpus):
        memory = f", {gpu.vram_bytes / 2**30:.0f} GiB" if gpu.vram_bytes else ""
        findings.append(
            Finding(
                f"amd gpu {index}",
                {
                    "kfd_node": gpu.node,
                    "gfx": gpu.gfx,
                    "device_id": f"0x{gpu.device_id:04x}",
                    "compute_units": gpu.compute_units,
                    "vram_bytes": gpu.vram_bytes,
                },
                "ok",
                f"{gpu.gfx} (device 0x{gpu.device_id:04x}), {gpu.compute_units} CUs{memory}",
            )
        )
    return findings
