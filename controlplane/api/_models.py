"""Bodies and answers of the routes beyond /session: administration, join tokens, GraphQL,
session events, the version probe and health, and the problem+json every error is."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, RootModel, StrictBool

from controlplane import jointokens
from controlplane.api._typed import CompatRequest, Query, Reply, Request
from controlplane.db.models import JoinToken, Keypair
from controlplane.images import ImageView
from controlplane.nodes import NodeView


class Problem(Reply):
    """application/problem+json (docs/backendai-api.md §5). `data` maps each wrong field to
    what is wrong with it when the request did not validate."""

    type: str
    title: str
    msg: str | None = None
    data: Any = None


# --- misc -----------------------------------------------------------------------------------


class Hello(Reply):
    version: str = Field(description="the newest Backend.AI API version spoken, v7.20230615")
    manager: str
    shipyard: str


class Announcement(Reply):
    enabled: bool
    message: str


class ResourceSlotTypes(RootModel[dict[str, Literal["count", "bytes"]]]):
    """Slot name -> its type, e.g. {"cpu": "count", "mem": "bytes", "cuda.device": "count"}."""


class NumberFormat(BaseModel):  # snake_case keys, as the manager sends them
    binary: bool
    round_length: int


class SlotDetail(BaseModel):
    """How a client shows a slot (Backend.AI's accelerator metadata, in snake_case)."""

    slot_name: str
    description: str
    human_readable_name: str
    display_unit: str
    number_format: NumberFormat
    display_icon: str


class ResourceSlotDetails(RootModel[dict[str, SlotDetail]]):
    """Slot name -> how to show it, for the known slots the nodes offer."""


class SlotDetailsQuery(Query):
    sgroup: str | None = Field(
        default=None, max_length=64, description="only the slots this scaling group's nodes offer"
    )


class Health(Reply):
    status: Literal["ok"]
    nodes_alive: int


# --- keypairs ---------------------------------------------------------------------------------


class CreateKeypair(Request):
    user: str = Field(min_length=3, max_length=256, description="the user's e-mail address")
    is_admin: StrictBool = Field(default=False, alias="isAdmin")


class KeypairView(Reply):
    access_key: str
    user_email: str
    is_active: bool
    is_admin: bool
    created_at: str

    @classmethod
    def of(cls, kp: Keypair) -> KeypairView:
        return cls(
            access_key=kp.access_key,
            user_email=kp.user.email,
            is_active=kp.is_active,
            is_admin=kp.is_admin,
            created_at=kp.created_at.isoformat(),
        )


class KeypairCreated(KeypairView):
    secret_key: str = Field(description="shown only in this answer")


class KeypairList(Reply):
    items: list[KeypairView]


class KeypairDeleted(Reply):
    access_key: str
    deleted: Literal[True] = True


# --- images and nodes -------------------------------------------------------------------------


class ImageItem(Reply):
    name: str
    source: str = Field(description='how the platform knows it: "recipe", "admin" or "upgrade"')
    digest: str
    size_bytes: int
    architecture: str
    labels: dict[str, str]
    aliases: list[str]
    nodes: list[str]

    @classmethod
    def of(cls, v: ImageView) -> ImageItem:
        return cls(
            name=v.name,
            source=v.source,
            digest=v.digest,
            size_bytes=v.size_bytes,
            architecture=v.architecture,
            labels=v.labels,
            aliases=v.aliases,
            nodes=v.nodes,
        )


class ImageList(Reply):
    items: list[ImageItem]


class RegisterImage(Request):
    name: str = Field(min_length=1, max_length=256, description="repo:tag, as a node has it")


class ImageForgotten(Reply):
    name: str
    forgotten: bool


class CreateAlias(Request):
    alias: str = Field(min_length=1, max_length=128)
    target: str = Field(min_length=1, max_length=256, description="an image name or alias")


class AliasView(Reply):
    alias: str
    target: str


class AliasDeleted(Reply):
    alias: str
    deleted: Literal[True] = True


class NodeDevice(Reply):
    """An accelerator device as its node's plugin reported it."""

    plugin: str
    id: str
    model: str
    memory_bytes: int
    uuid: str
    bus_id: str | None = None
    numa_node: int | None = None
    mig: bool = False


class NodeItem(Reply):
    id: str
    status: str = Field(description="ALIVE, LOST (no heartbeat within the timeout) or TERMINATED")
    status_info: str = Field(description="why the node has its status")
    architecture: str
    network_mode: str
    available_slots: dict[str, str]
    occupied_slots: dict[str, str] = Field(description="what its sessions hold now")
    devices: list[NodeDevice]
    cpu_cur_pct: float
    mem_cur_bytes: int
    live_stat: dict[str, Any] | None = Field(
        description="its latest heartbeat's figures: cpu_util, mem, and each device's util and mem"
    )
    first_contact: str
    last_contact: str

    @classmethod
    def of(cls, n: NodeView) -> NodeItem:
        return cls(
            id=n.id,
            status=n.status,
            status_info=n.status_info,
            architecture=n.architecture,
            network_mode=n.network_mode,
            available_slots=n.available_slots,
            occupied_slots=n.occupied_slots,
            devices=[NodeDevice.model_validate(d) for d in n.devices],
            cpu_cur_pct=n.cpu_cur_pct,
            mem_cur_bytes=n.mem_cur_bytes,
            live_stat=n.live_stat,
            first_contact=n.first_contact.isoformat(),
            last_contact=n.last_contact.isoformat(),
        )


class NodeList(Reply):
    items: list[NodeItem]


# --- join tokens -------------------------------------------------------------------------------


class CreateNodeToken(Request):
    ttl: float = Field(
        default=jointokens.DEFAULT_TTL.total_seconds(),
        ge=jointokens.MIN_TTL.total_seconds(),
        le=jointokens.MAX_TTL.total_seconds(),
        description="seconds until an unused token expires",
    )

    def lifetime(self) -> timedelta:
        return timedelta(seconds=self.ttl)


class NodeToken(Reply):
    token: str = Field(description="shown only in this answer")
    expires_at: str


class NodeTokenView(Reply):
    """A join token as admins see it after it was made: never the token itself."""

    id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    node_id: str | None = Field(description="the node that joined with it (its credential)")
    used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: JoinToken) -> NodeTokenView:
        return cls(
            id=row.id,
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            node_id=row.node_id,
            used_at=row.used_at,
            revoked_at=row.revoked_at,
        )


class NodeTokenList(Reply):
    items: list[NodeTokenView]


# --- GraphQL and events -------------------------------------------------------------------------


class GraphQLRequest(CompatRequest):
    query: str = Field(max_length=100_000)
    variables: dict[str, Any] | None = None
    operation_name: str | None = Field(
        default=None, validation_alias=AliasChoices("operationName", "operation_name")
    )


class GraphQLResponse(Reply):
    """Always 200: failures are in `errors` (docs/backendai-api.md §5.3)."""

    data: Any = None
    errors: list[dict[str, Any]] | None = Field(default=None, exclude_if=lambda v: v is None)


class EventsQuery(Query):
    scope: Literal["*", "session", "kernel"] = "*"
    session_id: str | None = Field(
        default=None, validation_alias=AliasChoices("sessionId", "session_id")
    )
    session_name: str = Field(default="*", validation_alias=AliasChoices("sessionName", "name"))
    owner_access_key: str | None = Field(
        default=None, validation_alias=AliasChoices("ownerAccessKey", "owner_access_key")
    )
    group: str = Field(default="*", validation_alias=AliasChoices("group", "groupName"))
