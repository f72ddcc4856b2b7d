"""Node configuration: a typed model read from and written to TOML (hostlib)."""

from __future__ import annotations

import socket
from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from hostlib import dump_config, load_config
from wire import Slots, SlotsError

NetworkMode = Literal["none", "bridge", "host"]  # the containers' network policy
NETWORK_MODES: tuple[str, ...] = get_args(NetworkMode)


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class NodeConfig:
    state_dir: Path  # runner copy, per-kernel socket and work directories live under it
    controlplane_url: str  # e.g. http://127.0.0.1:8081
    node_token: str
    node_id: str = f"i-{socket.gethostname()}"
    network_mode: NetworkMode = "none"
    cpu: float | None = None  # capacity offered to sessions; None = all cores
    mem: str | None = None  # e.g. "8g"; None = physical memory minus mem_reserve
    mem_reserve: str = "1g"
    pids_limit: int = 1024
    # containers run as this uid:gid, never as root; 65536-99999 is allocated by neither Debian
    # (policy 9.2.2), useradd (UID_MAX 60000, subordinate ids from 100000) nor systemd
    kernel_uid: Annotated[int, Field(gt=0, lt=2**31 - 1)] = 65536
    work_size: str = "1g"  # each kernel's /home/work quota (preallocated on the state disk)
    # false only where the node cannot mount filesystems the engine sees (a node inside a
    # container or systemd-nspawn): /home/work is then a plain folder on the state disk, unlimited
    work_quota: bool = True
    tmp_size: str = "256m"  # each kernel's /tmp (tmpfs: counted in the kernel's memory)
    disk_reserve: str = "2g"  # a kernel is refused if its work quota would leave less free
    heartbeat_interval: float = 5.0
    # warm kernels (node/pool.py): started, never-used containers kept ready per image, so a
    # session starts without waiting for the engine; 0 disables the pool
    warm_pool: Annotated[int, Field(ge=0, le=64)] = 2
    warm_pool_images: list[str] = field(default_factory=lambda: ["shipyard/python:3.11"])
    # accelerator plugins (entry points "shipyard.accelerators") this node uses; None: every
    # installed plugin but "mock" whose hardware is present. A listed plugin must open.
    accelerators: list[str] | None = None
    mock_devices: Path | None = None  # the mock plugin's TOML file of fake devices
    # the accelerator devices (ids: GPU UUIDs, KFD unique ids, mock names) sessions may use;
    # None: every device the plugins find. The installer writes the operator's choice here.
    gpus: list[str] | None = None
    nvidia_cdi: bool = False  # NVIDIA GPUs by CDI name (nvidia.com/gpu=UUID), not the runtime
    # the storage hosts' directories of virtual folders, at the paths the control plane has
    # them (the same shared filesystem path on every node); only folders in them are mounted
    vfolder_roots: list[Path] = field(default_factory=list)

    @field_validator("work_size", "tmp_size", "disk_reserve")
    @classmethod
    def _a_size(cls, value: str) -> str:
        _size(value)
        return value

    @property
    def work_size_bytes(self) -> int:
        return _size(self.work_size)

    @property
    def tmp_size_bytes(self) -> int:
        return _size(self.tmp_size)

    @property
    def disk_reserve_bytes(self) -> int:
        return _size(self.disk_reserve)

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        """ConfigError (hostlib) naming the file and the key when it is not usable."""
        return load_config(path, cls)

    def dump(self, path: Path) -> None:
        dump_config(self, path)


def _size(value: str) -> int:
    try:
        return int(Slots({"mem": value})["mem"])
    except SlotsError:
        raise PydanticCustomError("size", "a size such as 512m or 2g") from None
