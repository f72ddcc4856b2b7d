"""Version probe, announcement, health."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

import wire
from controlplane.api.app import core, public
from hostlib import __version__

bp = Blueprint("misc", __name__)
# what a Backend.AI client needs to hear to speak its newest protocol to us
MANAGER_COMPAT_VERSION = "23.09.10"


@bp.get("/")
@public
async def hello() -> dict[str, Any]:
    return {"version": wire.API_VERSION, "manager": MANAGER_COMPAT_VERSION, "shipyard": __version__}


@bp.get("/manager/announcement")
async def announcement() -> dict[str, Any]:
    return {"enabled": False, "message": ""}


@bp.get("/health")
@public
async def health() -> dict[str, Any]:
    return {"status": "ok", "nodesAlive": len(core().hub.connected())}
