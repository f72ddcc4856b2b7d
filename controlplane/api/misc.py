"""Version probe, announcement, health."""

from __future__ import annotations

from quart import Blueprint

import wire
from controlplane.api._context import core, public
from controlplane.api._models import Announcement, Health, Hello
from controlplane.api._typed import returns
from hostlib import __version__

bp = Blueprint("misc", __name__)
# what a Backend.AI client needs to hear to speak its newest protocol to us
MANAGER_COMPAT_VERSION = "23.09.10"


@bp.get("/")
@public
@returns(Hello)
async def hello() -> Hello:
    """The version probe Backend.AI clients send first, unsigned."""
    return Hello(version=wire.API_VERSION, manager=MANAGER_COMPAT_VERSION, shipyard=__version__)


@bp.get("/manager/announcement")
@returns(Announcement)
async def announcement() -> Announcement:
    """The manager's banner (Shipyard has none)."""
    return Announcement(enabled=False, message="")


@bp.get("/health")
@public
@returns(Health)
async def health() -> Health:
    """Liveness, unsigned: how many nodes are connected."""
    return Health(status="ok", nodes_alive=len(core().hub.connected()))
