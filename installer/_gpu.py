"""Accelerators: NVIDIA through NVML (pynvml, from the nvidia-ml-py package), AMD through sysfs
(the KFD topology the ROCm driver publishes, and DRM cards whose PCI vendor is 0x1002). The
reading itself is the node's accelerator plugins' (node/accelerators); this turns it into findings.

No driver is a finding ("info"), never an error: most machines have no GPU.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from installer._report import Finding
from node.accelerators.amd import amd_drm_cards, amd_gpus_from_kfd
from node.accelerators.nvidia import read_inventory

# --- NVIDIA ------------------------------------------------------------------------------------


NVIDIA_VENDOR = 0x10DE


def nvidia_pci_gpus(sysfs: Path = Path("/sys")) -> list[str]:
    """PCI addresses of NVIDIA display/3D controllers, whatever driver is (or is not) loaded."""
    found = []
    for device in sorted((sysfs / "bus/pci/devices").glob("*")):
        try:
            vendor = int((device / "vendor").read_text().strip(), 16)
            pci_class = int((device / "class").read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        if vendor == NVIDIA_VENDOR and pci_class >> 16 == 0x03:  # base class 03: display
            found.append(device.name)
    return found


def nvidia_findings(nvml: Any = None, sysfs: Path = Path("/sys")) -> list[Finding]:
    """What NVML says; `nvml` is the pynvml module (tests pass a stand-in). Without a driver,
    NVIDIA cards on the PCI bus are a warning: the node cannot offer them."""
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
        cards = nvidia_pci_gpus(sysfs)
        if cards:
            return [
                Finding(
                    "nvidia",
                    {"pci": cards},
                    "warning",
                    f"NVIDIA GPU(s) at PCI {', '.join(cards)} but no NVIDIA driver answers"
                    f" ({exc}): install the NVIDIA driver to use them",
                )
            ]
        return [Finding("nvidia", None, "info", f"no NVIDIA driver/NVML library: {exc}")]
    try:
        inventory = read_inventory(nvml)
    except nvml.NVMLError as exc:
        return [Finding("nvidia", None, "warning", f"NVML answered, then failed: {exc}")]
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
    driver, cuda = inventory.driver, inventory.cuda
    findings = [
        Finding(
            f"nvidia gpu {index}",
            {
                "name": gpu.model,
                "memory_bytes": gpu.memory_bytes,
                "uuid": gpu.uuid,
                "bus_id": gpu.bus_id,
                "mig": gpu.mig,
            },
            "ok",
            f"{gpu.model}{' (MIG)' if gpu.mig else ''}, {gpu.memory_bytes / 2**30:.0f} GiB",
        )
        for index, gpu in enumerate(inventory.devices)
    ]
    summary = Finding(
        "nvidia",
        {"driver": driver, "cuda": cuda, "count": len(findings)},
        "ok" if findings else "info",
        f"driver {driver} (CUDA {cuda}), {len(findings)} GPU(s)",
    )
    return [summary, *findings]


# --- AMD ---------------------------------------------------------------------------------------


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
                    "id": gpu.id,
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
