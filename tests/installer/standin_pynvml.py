"""A stand-in for the `pynvml` module (nvidia-ml-py) on a machine with NVIDIA GPUs, which ours
are not: the few NVML calls the installer's detection makes, answering like a driver 550 host
with two A100s. `StandInNVML(gpus=[])` is a driver without GPUs; `missing_library()` is a machine
without the NVIDIA driver."""

from __future__ import annotations

from dataclasses import dataclass, field


class NVMLError(Exception):
    def __init__(self, value: int, text: str) -> None:
        super().__init__(text)
        self.value = value


NVML_ERROR_LIBRARY_NOT_FOUND = 12


@dataclass
class MemoryInfo:
    total: int
    free: int
    used: int


@dataclass
class StandInGPU:
    name: str
    memory: int
    uuid: str


A100 = [
    StandInGPU("NVIDIA A100-SXM4-80GB", 80 * 2**30, "GPU-11111111-2222-3333-4444-555555555555"),
    StandInGPU("NVIDIA A100-SXM4-80GB", 80 * 2**30, "GPU-66666666-7777-8888-9999-000000000000"),
]


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
        return MemoryInfo(handle.memory, handle.memory, 0)

    def nvmlDeviceGetUUID(self, handle: StandInGPU) -> str:
        return handle.uuid


def missing_library() -> StandInNVML:
    return StandInNVML(library=False)
