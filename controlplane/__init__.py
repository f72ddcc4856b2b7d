"""The control plane: REST API, scheduler, sessions, images, tenancy (asyncio, via anyio)."""

from controlplane.config import ControlPlaneConfig

__all__ = ["ControlPlaneConfig"]
