"""Node configuration: a typed model read from and written to TOML (hostlib)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, get_args

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from hostlib import dump_config, load_config

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
    kernel_uid: int = 1000  # containers run as this uid:gid, never as root
    heartbeat_interval: float = 5.0

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        """ConfigError (hostlib) naming the file and the key when it is not usable."""
        return load_config(path, cls)

    def dump(self, path: Path) -> None:
        dump_config(self, path)
