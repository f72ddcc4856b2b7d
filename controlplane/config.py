"""Control plane configuration: a typed model read from and written to TOML."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import tomli_w


@dataclass(frozen=True)
class ControlPlaneConfig:
    state_dir: Path
    node_token: str  # shared secret nodes present when they dial in
    host: str = "127.0.0.1"
    port: int = 8081
    # SQLAlchemy URL; empty means the embedded SQLite database in state_dir
    database_url: str = ""

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.state_dir / 'controlplane.db'}"

    @property
    def admin_keypair_file(self) -> Path:
        """Written (mode 0600) when the first start bootstraps the admin keypair."""
        return self.state_dir / "admin-keypair.json"

    @classmethod
    def load(cls, path: Path) -> ControlPlaneConfig:
        data = tomllib.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}")
        data["state_dir"] = Path(data["state_dir"])
        return cls(**data)

    def dump(self, path: Path) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        path.write_text(tomli_w.dumps(data))
        path.chmod(0o600)
