"""What every Shipyard process needs from the machine it runs on, and nothing else: its own
version, how to start itself again (`shipyard_argv`) and host programs (`host_environ`), its
typed TOML configuration files (`load_config`, `dump_config`), and systemd's readiness and
watchdog protocol (`hostlib.sdnotify`).

This is the bottom layer beside `wire` (.importlinter): the control plane, the node, the client,
the kernel image builder and the installer may import it; it imports none of them.
"""

from hostlib._exe import host_environ, shipyard_argv

TYPE_CHECKING = False  # not typing's: importing typing costs `shipyard --version` its start-up
if TYPE_CHECKING:
    from hostlib._config import (
        ConfigError,
        dump_config,
        load_config,
        parse_config,
        render_config,
    )

__version__ = "0.1.0"
_CONFIG = frozenset({"ConfigError", "dump_config", "load_config", "parse_config", "render_config"})


def __getattr__(name: str) -> object:
    """The TOML loader, imported on first use: it imports pydantic (a tenth of a second), which
    `shipyard --version` and the processes that read no configuration need not pay for."""
    if name in _CONFIG:
        from hostlib import _config

        return getattr(_config, name)
    raise AttributeError(f"module 'hostlib' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "__version__",
    "dump_config",
    "host_environ",
    "load_config",
    "parse_config",
    "render_config",
    "shipyard_argv",
]
