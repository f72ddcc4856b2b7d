"""The `shipyard` command: one executable for the CLI, installer, control plane and node."""

__version__ = "0.1.0"
