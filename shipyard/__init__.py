"""The `shipyard` command: the one entry point that ties the packages together (cli.py).

No other package imports this one; what they share lives in `hostlib` and `wire`."""

from hostlib import __version__

__all__ = ["__version__"]
