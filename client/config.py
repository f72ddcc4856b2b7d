"""Where the client finds its control plane and keypair: SHIPYARD_* variables, else BACKEND_*."""

from __future__ import annotations

import os

from client.errors import ConfigError

TYPE_CHECKING = False  # the fast `shipyard run` imports this: nothing it does not need
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

_SETTINGS = ("endpoint", "access_key", "secret_key")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_IPV6_CHARS = frozenset("0123456789abcdef:.")


def split_endpoint(endpoint: str) -> tuple[bool, str, int | None, str] | None:
    """(https, host, port, path) of a plain `http[s]://HOST[:PORT][/PATH]` endpoint, as
    urllib.parse.urlsplit reads it (host lower-cased, an IPv6 address without its brackets);
    None for any other form, which urlsplit judges instead (urllib.parse imports `re`: the
    fast `shipyard run` does not pay for it)."""
    scheme, sep, rest = endpoint.partition("://")
    netloc, slash, path = rest.partition("/")
    if scheme not in ("http", "https") or not sep or not rest.isascii():
        return None
    if any(c in rest for c in "?#@%\\ \t\r\n"):
        return None
    host, port_text = netloc.lower(), ""
    if host.startswith("["):
        host, bracket, port_text = host[1:].partition("]")
        if not bracket or not host or not set(host) <= _IPV6_CHARS or ":" not in host:
            return None
        if port_text and not port_text.startswith(":"):
            return None
        port_text = port_text[1:]
    else:
        host, colon, port_text = host.partition(":")
        if not host or not set(host) <= _HOST_CHARS or (colon and not port_text):
            return None
    port = None
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
            return None
        port = int(port_text)
    return scheme == "https", host, port, slash + path


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`shipyard up`'s state directory: $XDG_DATA_HOME/shipyard or ~/.local/share/shipyard."""
    from pathlib import Path

    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "shipyard"


class ClientConfig:
    """A plain class, not a dataclass: dataclasses imports inspect, a fifth of the fast
    `shipyard run`'s start-up."""

    __slots__ = ("access_key", "endpoint", "secret_key")

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        if split_endpoint(endpoint) is None:
            from urllib.parse import urlsplit

            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"the endpoint must be an http:// or https:// URL, not {endpoint!r}"
                )
        self.endpoint = endpoint  # e.g. http://127.0.0.1:8081, possibly with a path prefix
        self.access_key = access_key
        self.secret_key = secret_key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClientConfig):
            return NotImplemented
        return (self.endpoint, self.access_key, self.secret_key) == (
            other.endpoint,
            other.access_key,
            other.secret_key,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"ClientConfig({self.endpoint!r}, {self.access_key!r}, <secret>)"

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
