"""Version probe, announcement, health, the resource slot names."""

from __future__ import annotations

from quart import Blueprint
from sqlalchemy import select

import wire
from controlplane.api._context import core, public
from controlplane.api._models import (
    Announcement,
    Health,
    Hello,
    NumberFormat,
    ResourceSlotDetails,
    ResourceSlotTypes,
    SlotDetail,
    SlotDetailsQuery,
)
from controlplane.api._typed import query, returns
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


def _detail(name: str, label: str, text: str, unit: str, icon: str, digits: int) -> SlotDetail:
    return SlotDetail(
        slot_name="ram" if name == "mem" else name,
        description=text,
        human_readable_name=label,
        display_unit=unit,
        number_format=NumberFormat(binary=name == "mem", round_length=digits),
        display_icon=icon,
    )


# the slots whose display Backend.AI's clients know (docs/backendai-api.md §14.3)
SLOT_DETAILS = {
    "cpu": _detail("cpu", "CPU", "CPU", "Core", "cpu", 0),
    "mem": _detail("mem", "RAM", "Memory", "GiB", "cpu", 0),
    "cuda.device": _detail("cuda.device", "GPU", "CUDA-capable GPU", "GPU", "gpu1", 0),
    "cuda.shares": _detail(
        "cuda.shares", "fGPU", "CUDA-capable GPU (fractional)", "fGPU", "gpu1", 2
    ),
    "rocm.device": _detail("rocm.device", "GPU", "ROCm-capable GPU", "GPU", "gpu2", 0),
}


@bp.get("/config/resource-slots/details")
@returns(ResourceSlotDetails)
@query(SlotDetailsQuery)
async def resource_slot_details(args: SlotDetailsQuery) -> ResourceSlotDetails:
    """How to show each known slot that nodes offer (with `sgroup`: that scaling group's
    connected nodes only); cpu and mem always."""
    names = {"cpu", "mem"}
    nodes = select(Node.available_slots).where(Node.status == "ALIVE")
    if args.sgroup is not None:
        nodes = nodes.where(Node.scaling_group == args.sgroup)
    async with core().db() as db:
        for capacity in await db.scalars(nodes):
            names.update(capacity)
    return ResourceSlotDetails({n: SLOT_DETAILS[n] for n in sorted(names) if n in SLOT_DETAILS})
