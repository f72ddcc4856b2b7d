"""Where the client finds its control plane and keypair: SHIPYARD_* variables, else BACKEND_*."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from client.errors import ConfigError

_SETTINGS = ("endpoint", "access_key", "secret_key")


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`shipyard up`'s state directory: $XDG_DATA_HOME/shipyard or ~/.local/share/shipyard."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "shipyard"


@dataclass(frozen=True)
class ClientConfig:
    endpoint: str  # e.g. http://127.0.0.1:8081, possibly with a path prefix
    access_key: str
    secret_key: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"the endpoint must be an http:// or https:// URL, not {self.endpoint!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        missing: list[str] = []
        for setting in _SETTINGS:
            name = setting.upper()
            value = environ.get(f"SHIPYARD_{name}") or environ.get(f"BACKEND_{name}")
            if value:
                values[setting] = value.strip()
            else:
                missing.append(f"SHIPYARD_{name}")
        if missing:
            env_file = default_state_dir(environ) / "client.env"
            raise ConfigError(
                f"{', '.join(missing)} not set; source the file `shipyard up` wrote: . {env_file}"
            )
        return cls(**values)
