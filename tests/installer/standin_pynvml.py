"""A stand-in for the `pynvml` module (nvidia-ml-py) on a machine with NVIDIA GPUs, which ours
are not: the NVML calls the installer's detection and the node's NVIDIA plugin make, answering
with values written after a driver 550 host with two A100s (one of them, in `MIG_A100`, split
into two MIG instances). `StandInNVML(gpus=[])` is a driver without GPUs; `missing_library()` is
a machine without the NVIDIA driver."""

from __future__ import annotations

from dataclasses import dataclass, field


class NVMLError(Exception):
    def __init__(self, value: int, text: str) -> None:
        super().__init__(text)
        self.value = value


NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12


@dataclass
class MemoryInfo:
    total: int
    free: int
    used: int


@dataclass
class PciInfo:
    busId: str  # NVML's field name


@dataclass
class Utilization:
    gpu: int
    memory: int


@dataclass
class StandInGPU:
    name: str
    memory: int
    uuid: str
    bus_id: str = "00000000:07:00.0"
    util: int = 0  # percent
    used: int = 0  # bytes
    mig: list[StandInGPU] | None = None  # MIG instances when MIG mode is on


A100 = [
    StandInGPU(
        "NVIDIA A100-SXM4-80GB", 80 * 2**30, "GPU-11111111-2222-3333-4444-555555555555",
        "00000000:07:00.0", util=35, used=3 * 2**30,
    ),
    StandInGPU(
        "NVIDIA A100-SXM4-80GB", 80 * 2**30, "GPU-66666666-7777-8888-9999-000000000000",
        "00000000:0F:00.0",
    ),
]  # fmt: skip

# the second A100 in MIG mode with two 3g.40gb instances
MIG_A100 = [
    A100[0],
    StandInGPU(
        "NVIDIA A100-SXM4-80GB", 80 * 2**30, "GPU-66666666-7777-8888-9999-000000000000",
        "00000000:0F:00.0",
        mig=[
            StandInGPU("NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40 * 2**30,
                       "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", used=2**30),
            StandInGPU("NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40 * 2**30,
                       "MIG-ffffffff-1111-2222-3333-444444444444"),
        ],
    ),
]  # fmt: skip


@dataclass
class StandInNVML:
    gpus: list[StandInGPU] = field(default_factory=lambda: list(A100))
    library: bool = True
    initialized: bool = False
    shutdowns: int = 0
    NVMLError = NVMLError

    def nvmlInit(self) -> None:
        if not self.library:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND, "NVML Shared Library Not Found")
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.initialized = False
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> StandInGPU:
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: StandInGPU) -> bytes:
        return handle.name.encode()  # older bindings answer bytes

    def nvmlDeviceGetMemoryInfo(self, handle: StandInGPU) -> MemoryInfo:
        return MemoryInfo(handle.memory, handle.memory - handle.used, handle.used)

    def nvmlDeviceGetPciInfo(self, handle: StandInGPU) -> PciInfo:
        return PciInfo(handle.bus_id)

    def nvmlDeviceGetMigMode(self, handle: StandInGPU) -> tuple[int, int]:
        if handle.mig is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")
        return (1, 1)

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: StandInGPU) -> int:
        return 7  # an A100's MIG slots; the unused ones answer NOT_FOUND

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: StandInGPU, index: int) -> StandInGPU:
        if handle.mig is None or index >= len(handle.mig):
            raise NVMLError(NVML_ERROR_NOT_FOUND, "Not Found")
        return handle.mig[index]

    def nvmlDeviceGetUtilizationRates(self, handle: StandInGPU) -> Utilization:
        if handle.uuid.startswith("MIG-"):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")
        return Utilization(handle.util, 0)

    def nvmlDeviceGetUUID(self, handle: StandInGPU) -> str:
        return handle.uuid


def missing_library() -> StandInNVML:
    return StandInNVML(library=False)
