"""Control plane configuration: a typed model read from and written to TOML (hostlib)."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from hostlib import dump_config, load_config


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ControlPlaneConfig:
    state_dir: Path
    node_token: str  # shared secret nodes present when they dial in
    host: str = "127.0.0.1"
    port: int = 8081
    # SQLAlchemy URL; empty means the embedded SQLite database in state_dir
    database_url: str = ""
    # the key secret keys are sealed with (0600, made on first start); empty: state_dir/secrets.key
    secrets_key_file: str = ""
    # serve HTTPS with this certificate chain and private key (PEM); both empty: plain HTTP,
    # fit only for localhost
    tls_certfile: str = ""
    tls_keyfile: str = ""
    # a node not heard from for this long is LOST and its sessions end (controlplane/nodewatch.py);
    # nodes send a heartbeat every 5 s by default
    node_heartbeat_timeout: float = 30.0
    # storage hosts of virtual folders: name -> directory, a local one or a shared filesystem
    # mounted at the same path on every node; empty: {"local:volume1": state_dir/vfolders}
    vfolder_hosts: dict[str, Path] = field(default_factory=dict)
    vfolder_default_host: str = "local:volume1"
    # what sessions run as (the nodes' kernel_uid): the owner of what the API writes in folders
    vfolder_uid: int = 65536

    def __post_init__(self) -> None:
        if not self.node_heartbeat_timeout > 0:
            raise ValueError("node_heartbeat_timeout must be a positive number of seconds")
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("tls_certfile and tls_keyfile go together")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.state_dir / 'controlplane.db'}"

    @property
    def secrets_key_path(self) -> Path:
        return (
            Path(self.secrets_key_file) if self.secrets_key_file else self.state_dir / "secrets.key"
        )

    @property
    def effective_vfolder_hosts(self) -> dict[str, Path]:
        return dict(self.vfolder_hosts) or {self.vfolder_default_host: self.state_dir / "vfolders"}

    @property
    def scheme(self) -> str:
        return "https" if self.tls_certfile else "http"

    @property
    def admin_keypair_file(self) -> Path:
        """Written (mode 0600) when the first start bootstraps the admin keypair."""
        return self.state_dir / "admin-keypair.json"

    @classmethod
    def load(cls, path: Path) -> ControlPlaneConfig:
        """ConfigError (hostlib) naming the file and the key when it is not usable."""
        return load_config(path, cls)

    def dump(self, path: Path) -> None:
        dump_config(self, path)
