"""Version probe, announcement, health, the resource slot names."""

from __future__ import annotations

from quart import Blueprint
from sqlalchemy import select

import wire
from controlplane.api._context import core, public
from controlplane.api._models import Announcement, Health, Hello, ResourceSlotTypes
from controlplane.api._typed import returns
from controlplane.db.models import Node
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


@bp.get("/config/resource-slots")
@returns(ResourceSlotTypes)
async def resource_slots() -> ResourceSlotTypes:
    """Every slot a session may ask for, with its type (`count` or `bytes`): cpu and mem, and
    what the nodes' accelerator plugins report (cuda.device, cuda.shares, ...)."""
    names = {"cpu", "mem"}
    async with core().db() as db:
        for capacity in await db.scalars(select(Node.available_slots)):
            names.update(capacity)
    return ResourceSlotTypes({n: "bytes" if n == "mem" else "count" for n in sorted(names)})
