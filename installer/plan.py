"""What to install, as one typed object: the TUI builds it, an answers file (TOML) spells it.

    role = "all-in-one"          # or "node" (with controlplane_url and join_token)
    database_url = ""            # "" = embedded SQLite; or postgresql+asyncpg://user:pw@host/db
    vfolder_root = "/var/lib/shipyard/vfolders"
    network_mode = "none"        # the session containers' network: none | bridge | host
    bind_host = "127.0.0.1"
    port = 8081
    tls = "none"                 # "self-signed" (made here) or "provided" (tls_certfile/keyfile);
                                 # required off localhost: signed requests must not be captured
    service_user = "shipyard"    # the system user the control plane runs as (created)
    gpus = ["GPU-8f3e..."]       # the GPUs sessions may use (ids from detection); unset: all

Every setting has a default except `role`; `installer/examples/single-node.toml` is a complete
example. Paths are settings too (executable, state, config and unit directories), so tests and
unusual hosts can put them elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from hostlib import ConfigError, load_config, parse_config, render_config
from installer.errors import PlanError

Role = Literal["all-in-one", "node"]
NetworkMode = Literal["none", "bridge", "host"]
TlsMode = Literal["none", "self-signed", "provided"]
DEFAULT_STATE_DIR = Path("/var/lib/shipyard")
DEFAULT_VFOLDER_ROOT = DEFAULT_STATE_DIR / "vfolders"
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DATABASE_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")
_LONGEST_SOCKET = "/node/k/000000000000/sock/node.sock"  # see node.kernels.check_state_dir


def default_node_id() -> str:
    return f"i-{socket.gethostname()}"


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Plan:
    role: Role
    # "" = the embedded SQLite database in state_dir; else a SQLAlchemy URL for PostgreSQL
    database_url: str = ""
    # where virtual folders live (created by the installer)
    vfolder_root: Path = DEFAULT_VFOLDER_ROOT
    network_mode: NetworkMode = "none"
    bind_host: str = "127.0.0.1"
    port: int = 8081
    executable: Path = Path("/usr/local/bin/shipyard")
    state_dir: Path = DEFAULT_STATE_DIR
    config_dir: Path = Path("/etc/shipyard")
    install_engine: bool = False  # apt-get install docker.io when no engine answers
    controlplane_url: str = ""  # node role: the control plane to join
    join_token: str = ""  # node role: from `shipyard node token create`
    node_id: str = ""  # "" = i-<hostname>
    # TLS for the API: none (localhost only), self-signed (made by the installer), or provided
    # (tls_certfile and tls_keyfile, PEM). Role node: tls_certfile is the control plane's
    # certificate to trust (a self-signed one), if any.
    tls: TlsMode = "none"
    tls_certfile: str = ""
    tls_keyfile: str = ""
    # the dedicated system user the control plane runs as; "" runs it as root (test roots)
    service_user: str = "shipyard"
    # the accelerator devices the node offers to sessions, by the ids detection shows (GPU
    # UUIDs, KFD unique ids); None: every one it finds, now and after a GPU is added
    gpus: list[str] | None = None
    # additions to the engine's API: where unit files go, and the image the final check runs
    unit_dir: Path = Path("/etc/systemd/system")
    verify_image: str = "python"

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise PlanError("; ".join(problems))

    # --- derived ---------------------------------------------------------------------------

    @property
    def effective_node_id(self) -> str:
        return self.node_id or default_node_id()

    @property
    def endpoint(self) -> str:
        """The URL clients and the node use for the control plane."""
        if self.role == "node":
            return self.controlplane_url.rstrip("/")
        host = "127.0.0.1" if self.bind_host in ("0.0.0.0", "::") else self.bind_host
        scheme = "http" if self.tls == "none" else "https"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def tls_files(self) -> tuple[Path, Path] | None:
        """The control plane's certificate and key (all-in-one with TLS), else None."""
        if self.role == "node" or self.tls == "none":
            return None
        if self.tls == "provided":
            return Path(self.tls_certfile), Path(self.tls_keyfile)
        return self.config_dir / "tls" / "cert.pem", self.config_dir / "tls" / "key.pem"

    @property
    def trusted_certificate(self) -> Path | None:
        """A certificate file clients of this control plane must trust (SSL_CERT_FILE): the
        self-signed one, or the one a joining node was given."""
        if self.role == "node":
            return Path(self.tls_certfile) if self.tls_certfile else None
        return self.tls_files[0] if self.tls == "self-signed" and self.tls_files else None

    @property
    def units(self) -> list[str]:
        if self.role == "node":
            return ["shipyard-node.service"]
        return ["shipyard-controlplane.service", "shipyard-node.service"]

    # --- TOML ------------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, text: str, *, source: str = "the answers") -> Plan:
        """The answers in `text`; PlanError naming `source` and the bad key."""
        return _loaded(lambda: parse_config(text, cls, source=source), source)

    @classmethod
    def load(cls, path: Path) -> Plan:
        return _loaded(lambda: load_config(path, cls), str(path))

    def to_toml(self) -> str:
        return render_config(self)

    def replace(self, **changes: Any) -> Plan:
        return dataclasses.replace(self, **changes)


def _loaded(load: Callable[[], Plan], source: str) -> Plan:
    """The loader's ConfigError, and the plan's own checks, as a PlanError naming `source`."""
    try:
        return load()
    except ConfigError as exc:
        raise PlanError(str(exc)) from None
    except PlanError as exc:
        raise PlanError(f"{source}: {exc}") from None


def _problems(plan: Plan) -> list[str]:
    """What the types alone do not say (the role and the network mode are Literal types)."""
    problems: list[str] = []
    if not 1 <= plan.port <= 65535:
        problems.append(f"port must be between 1 and 65535, not {plan.port}")
    for name in ("vfolder_root", "executable", "state_dir", "config_dir", "unit_dir"):
        path = getattr(plan, name)
        if not path.is_absolute():
            problems.append(f"{name} must be an absolute path, not {str(path)!r}")
    # the node's kernel sockets live under it, and a Unix socket path has at most 107 bytes
    longest = len(str(plan.state_dir).encode()) + len(_LONGEST_SOCKET)
    if longest > 107:
        problems.append(
            f"state_dir {str(plan.state_dir)!r} is too long: kernel sockets under it would need"
            f" {longest} bytes, and Unix sockets allow 107; choose a shorter path"
        )
    for name in ("tls_certfile", "tls_keyfile"):
        value = getattr(plan, name)
        if value and not Path(value).is_absolute():
            problems.append(f"{name} must be an absolute path, not {value!r}")
    if plan.role == "all-in-one":
        provided = bool(plan.tls_certfile and plan.tls_keyfile)
        if plan.tls == "provided" and not provided:
            problems.append("tls = 'provided' needs tls_certfile and tls_keyfile")
        if plan.tls != "provided" and (plan.tls_certfile or plan.tls_keyfile):
            problems.append("tls_certfile and tls_keyfile are for tls = 'provided'")
    elif plan.tls != "none" or plan.tls_keyfile:
        problems.append(
            "a node has no TLS of its own: give tls_certfile (the control plane's"
            " certificate to trust) and an https:// controlplane_url"
        )
    if plan.service_user and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", plan.service_user):
        problems.append(f"service_user {plan.service_user!r} is not a valid user name")
    if plan.node_id and not _NODE_ID.fullmatch(plan.node_id):
        problems.append(f"node_id {plan.node_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if not _valid_host(plan.bind_host):
        problems.append(f"bind_host {plan.bind_host!r} is not an IP address or host name")
    if plan.database_url:
        scheme = plan.database_url.partition("://")[0]
        if scheme not in DATABASE_SCHEMES:
            problems.append(
                f"database_url must start with postgresql+asyncpg:// (or be empty for the"
                f" embedded database), not {scheme + '://'!r}"
            )
    if plan.role == "node":
        if not plan.controlplane_url:
            problems.append("controlplane_url is required for role 'node'")
        elif urlsplit(plan.controlplane_url).scheme not in ("http", "https"):
            problems.append(
                f"controlplane_url must be an http:// or https:// URL,"
                f" not {plan.controlplane_url!r}"
            )
        if not plan.join_token:
            problems.append(
                "join_token is required for role 'node' (on the control plane:"
                " shipyard node token create)"
            )
        if plan.database_url:
            problems.append("database_url is for role 'all-in-one'; a node has no database")
    else:
        for name in ("controlplane_url", "join_token"):
            if getattr(plan, name):
                problems.append(f"{name} is only for role 'node', not {plan.role!r}")
    if not plan.verify_image.strip():
        problems.append("verify_image must name an image or alias")
    return problems


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host))
    return True


# --- the database check --------------------------------------------------------------------


async def check_database(url: str, time_limit: float = 5.0) -> None:
    """Connect to the PostgreSQL at `url` and run `SELECT 1`; PlanError saying why not.

    Runs under trio (the engine) and asyncio (the TUI) alike: asyncpg is asyncio-only, so the
    probe runs its own event loop in a worker thread.
    """
    if not url:
        return
    try:
        await anyio.to_thread.run_sync(lambda: asyncio.run(_probe(url, time_limit)))
    except PlanError:
        raise
    except Exception as exc:
        raise PlanError(f"cannot use the database at {redact(url)}: {_reason(exc)}") from exc


async def _probe(url: str, time_limit: float) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    try:
        engine = create_async_engine(url, connect_args=_connect_args(url, time_limit))
    except Exception as exc:  # a malformed URL, an unknown driver
        raise PlanError(f"database_url {redact(url)} is not usable: {exc}") from exc
    try:
        async with asyncio.timeout(time_limit):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except TimeoutError:
        raise PlanError(
            f"no answer from the database at {redact(url)} within {time_limit:.0f} s;"
            " is PostgreSQL running and reachable from here?"
        ) from None
    finally:
        await engine.dispose()


def _connect_args(url: str, timeout: float) -> dict[str, Any]:
    return {"timeout": timeout} if url.startswith("postgresql+asyncpg") else {}


def _reason(exc: BaseException) -> str:
    """The innermost message of a SQLAlchemy/asyncpg error chain, which names the cause."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, OSError) and (exc.errno or exc.strerror):
        reason = os.strerror(exc.errno) if exc.errno else str(exc.strerror)
        return f"{reason} (is PostgreSQL running and listening there?)"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def redact(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
