"""What every Shipyard process needs from the machine it runs on, and nothing else: its own
version, how to start itself again (`shipyard_argv`) and host programs (`host_environ`), its
typed TOML configuration files (`load_config`, `dump_config`), and systemd's readiness and
watchdog protocol (`hostlib.sdnotify`).

This is the bottom layer beside `wire` (.importlinter): the control plane, the node, the client,
the kernel image builder and the installer may import it; it imports none of them.
"""

from hostlib._config import ConfigError, dump_config, load_config, parse_config, render_config
from hostlib._exe import host_environ, shipyard_argv

__version__ = "0.1.0"

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
