"""Node configuration: a typed model read from and written to TOML."""

from __future__ import annotations

import socket
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import tomli_w

NETWORK_MODES = ("none", "bridge", "host")


@dataclass(frozen=True)
class NodeConfig:
    state_dir: Path  # runner copy, per-kernel socket and work directories live under it
    controlplane_url: str  # e.g. http://127.0.0.1:8081
    node_token: str
    node_id: str = f"i-{socket.gethostname()}"
    network_mode: str = "none"  # container network policy: none | bridge | host
    cpu: float | None = None  # capacity offered to sessions; None = all cores
    mem: str | None = None  # e.g. "8g"; None = physical memory minus mem_reserve
    mem_reserve: str = "1g"
    pids_limit: int = 1024
    kernel_uid: int = 1000  # containers run as this uid:gid, never as root
    heartbeat_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.network_mode not in NETWORK_MODES:
            raise ValueError(
                f"network_mode must be one of {', '.join(NETWORK_MODES)}, not {self.network_mode!r}"
            )

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        data = tomllib.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}")
        data["state_dir"] = Path(data["state_dir"])
        return cls(**data)

    def dump(self, path: Path) -> None:
        data = {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(self).items()
            if v is not None
        }
        path.write_text(tomli_w.dumps(data))
        path.chmod(0o600)
