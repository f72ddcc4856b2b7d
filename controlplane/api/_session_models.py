"""The /session routes' bodies and answers, field for field as Backend.AI's manager has them
(docs/backendai-api.md §6.1-6.2), with the aliases its clients use."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from controlplane import sessions as sessions_db
from controlplane.api._typed import CompatRequest, Query, Reply
from controlplane.apps import ServicePort
from controlplane.db.models import Session
from controlplane.db.types import utcnow
from controlplane.vfolders import MountRequest


def _alias(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


# checked by sessions.requested_slots, so that a wrong value gets one message, not one per type
Quantity = Annotated[Any, WithJsonSchema({"type": ["string", "number"]})]


class SessionConfig(CompatRequest):
    resources: dict[str, Quantity] | None = Field(
        default=None, description="cpu (cores, at least 0.01) and mem (bytes or 512m, 2g, ...)"
    )
    environ: dict[str, str] | None = None
    # virtual folders (docs/backendai-api.md §12.1): names, NAME -> path, and Shipyard's own
    # NAME -> {"permission": "ro"} to mount a folder read-only whatever one's permission
    mounts: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, max_length=64
    )
    mount_map: dict[str, Annotated[str, Field(min_length=1, max_length=256)]] | None = _alias(
        "mount_map", "mountMap"
    )
    mount_options: dict[str, dict[str, str]] | None = _alias("mount_options", "mountOptions")
    preopen_ports: list[Any] | None = _alias("preopen_ports", "preopenPorts")
    scaling_group: str | None = Field(
        default=None,
        validation_alias=AliasChoices("scalingGroup", "scaling_group"),
        max_length=64,
        description="the scaling group (node pool) to run in; null: the first the project may use",
    )

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, Quantity] | None) -> dict[str, Quantity] | None:
        for key, quantity in (value or {}).items():
            if isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
                raise ValueError(f"{key} must be a number or a string like '2' or '512m'")
        sessions_db.requested_slots(value or {})
        return value

    def mount_request(self) -> MountRequest:
        options = self.mount_options or {}
        return MountRequest(
            names=list(self.mounts or []),
            paths=dict(self.mount_map or {}),
            read_only={name for name, o in options.items() if o.get("permission") == "ro"},
        )

    @field_validator("preopen_ports")
    @classmethod
    def _no_ports(cls, value: Any) -> Any:
        if value:
            raise ValueError("app ports are not supported yet")
        return value


class CreateSession(CompatRequest):
    """POST /session (keys and aliases as Backend.AI clients send them; others are ignored)."""

    image: str = Field(
        validation_alias=AliasChoices("image", "lang"),
        min_length=1,
        max_length=256,
        description="an image name or alias, e.g. python",
    )
    name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("name", "session_name", "clientSessionToken"),
        pattern=sessions_db.NAME_PATTERN,
        min_length=sessions_db.NAME_LENGTH[0],
        max_length=sessions_db.NAME_LENGTH[1],
        description="4-64 ASCII letters, digits, '_', '-' or '.', starting and ending with a"
        " letter, digit or '_'",
    )
    type: Literal["interactive", "batch"] | None = _alias("type", "sessionType")
    startup_command: str | None = Field(
        default=None,
        validation_alias=AliasChoices("startupCommand", "startup_command"),
        validate_default=True,
    )
    enqueue_only: StrictBool | None = _alias("enqueueOnly", "enqueue_only")
    max_wait_seconds: Annotated[float, Field(ge=0, le=86400)] | None = _alias(
        "maxWaitSeconds", "max_wait_seconds"
    )
    reuse_if_exists: StrictBool | None = _alias("reuseIfExists", "reuse_if_exists")
    tag: str | None = Field(default=None, max_length=64)
    owner_access_key: str | None = _alias("owner_access_key", "ownerAccessKey")
    group: str | None = Field(
        default=None,
        validation_alias=AliasChoices("group", "group_name"),
        max_length=64,
        description="the project (Backend.AI's group) by name; null: the default project",
    )
    config: SessionConfig | None = None
    domain: str | None = Field(default=None, max_length=64)
    dependencies: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None,
        max_length=64,
        description="sessions (ids or names, ended ones too) that must succeed before this starts",
    )
    starts_at: str | None = Field(
        default=None,
        validation_alias=AliasChoices("starts_at", "startsAt"),
        max_length=64,
        description="batch only: ISO 8601 time or a delay (30m, 1h, 1d1hr, seconds)",
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("required: an image name or alias, e.g. python")
        return value.strip()

    @field_validator("type", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("startup_command")
    @classmethod
    def _batch_needs_command(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("type") == "batch" and not value:
            raise ValueError("a batch session needs a startup command")
        return value

    @field_validator("starts_at")
    @classmethod
    def _batch_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("type") != "batch":
            raise ValueError("only batch sessions can be scheduled to start later")
        return value

    def params(self) -> sessions_db.CreateParams:
        config = self.config or SessionConfig()
        return sessions_db.CreateParams(
            name=self.name or f"session-{secrets.token_hex(5)}",
            image=self.image,
            type=(self.type or "interactive").upper(),
            resources=sessions_db.requested_slots(config.resources or {}),
            environ=config.environ or {},
            startup_command=self.startup_command,
            enqueue_only=bool(self.enqueue_only),
            max_wait=self.max_wait_seconds or 0.0,
            reuse=self.reuse_if_exists is not False,
            tag=self.tag,
            owner_access_key=self.owner_access_key or None,
            group=self.group or None,
            domain=self.domain or None,
            mounts=config.mount_request(),
            scaling_group=config.scaling_group,
            dependencies=tuple(self.dependencies or ()),
            starts_at=self.starts_at,
        )


class ServicePortView(Reply):
    """One app of a session, as `/apps` and `servicePorts` give it (§10.2)."""

    name: str
    protocol: str = Field(description="tcp | http | preopen")
    ports: list[int] = Field(description="its ports on the container's own loopback")

    @classmethod
    def of(cls, app: ServicePort) -> ServicePortView:
        return cls(name=app.name, protocol=app.protocol, ports=list(app.ports))


class SessionCreated(Reply):
    """A new session, answered once it runs (or at once with enqueueOnly)."""

    session_id: str
    session_name: str
    status: str
    status_info: str
    service_ports: list[ServicePortView] = []
    created: Literal[True] = True


class SessionReused(Reply):
    """An active session of that name and image already existed (the manager's exact keys)."""

    session_id: str
    session_name: str
    status: str
    service_ports: list[Any] = Field(default=[], alias="service_ports")
    created: Literal[False] = False


class StatusChangeView(Reply):
    status: str
    reason: str
    at: str


class SessionInfo(Reply):
    """GET /session/<ref>: Backend.AI's keys plus Shipyard's status history."""

    session_id: str
    session_name: str
    domain_name: str
    group_id: str
    user_id: str
    access_key: str
    type: str
    lang: str
    image: str
    architecture: str | None
    tag: str | None
    node: str | None
    container_id: str | None
    status: str
    status_info: str
    status_data: dict[str, Any] | None
    status_changed: str
    result: str
    exit_code: int | None
    requested_slots: dict[str, str]
    occupied_slots: dict[str, str]
    occupying_slots: dict[str, str]
    environ: dict[str, str]
    creation_time: str
    termination_time: str | None
    age: int = Field(description="milliseconds since creation")
    last_stat: dict[str, Any] | None = Field(
        description="the latest statistics of its main container (kept when it ends)"
    )
    status_history: list[StatusChangeView]
    service_ports: list[ServicePortView] = Field(
        default=[], description="the session's apps while it runs (§10.2)"
    )

    @classmethod
    def of(
        cls,
        session: Session,
        architecture: str | None,
        service_ports: Sequence[ServicePort] = (),
    ) -> SessionInfo:
        main = session.kernels[0] if session.kernels else None
        exit_code = (session.status_data or {}).get("exit_code")
        occupying = sessions_db.occupying(session)
        return cls(
            session_id=str(session.id),
            session_name=session.name,
            domain_name=session.domain_name,
            group_id=str(session.project_id),
            user_id=str(session.user_id),
            access_key=session.access_key,
            type=session.type,
            lang=session.image,
            image=session.image,
            architecture=architecture,
            tag=session.tag,
            node=session.node_id,
            container_id=main.container_id if main else None,
            status=session.status,
            status_info=session.status_info,
            status_data=session.status_data,
            status_changed=session.status_changed.isoformat(),
            result=session.result,
            exit_code=exit_code if isinstance(exit_code, int) else None,
            requested_slots=session.requested_slots,
            occupied_slots=occupying,
            occupying_slots=occupying,
            environ=session.environ,
            creation_time=session.created_at.isoformat(),
            termination_time=session.terminated_at.isoformat() if session.terminated_at else None,
            age=int((utcnow() - session.created_at).total_seconds() * 1000),
            last_stat=main.live_stat if main else None,
            service_ports=[ServicePortView.of(app) for app in service_ports],
            status_history=[
                StatusChangeView(status=h.status, reason=h.reason, at=h.at.isoformat())
                for h in session.history
            ],
        )


class SessionBrief(Reply):
    session_id: str
    session_name: str
    status: str
    status_info: str
    image: str
    type: str
    creation_time: str

    @classmethod
    def of(cls, session: Session) -> SessionBrief:
        return cls(
            session_id=str(session.id),
            session_name=session.name,
            status=session.status,
            status_info=session.status_info,
            image=session.image,
            type=session.type,
            creation_time=session.created_at.isoformat(),
        )


class SessionList(Reply):
    items: list[SessionBrief]


class ListQuery(Query):
    all: bool = Field(default=False, description="include sessions that ended")


class OwnerQuery(Query):
    owner_access_key: str | None = Field(
        default=None, validation_alias=AliasChoices("owner_access_key", "ownerAccessKey")
    )


class DestroyQuery(OwnerQuery):
    forced: bool = False


class Destroyed(Reply):
    stats: dict[str, Any] = Field(description='at least {"status": ...}')


class LogsResult(Reply):
    logs: str


class Logs(Reply):
    result: LogsResult


class UploadForm(CompatRequest):
    """multipart/form-data: up to 20 parts named `src`, each under 1 MiB, named by their
    relative path."""

    src: list[bytes]


class ExecuteRequest(CompatRequest):
    """One step of a run: start it (query, batch), poll it (continue) or answer its prompt
    (input). The first frame of the WebSocket execute stream has the same shape."""

    mode: Literal["query", "batch", "continue", "input"] = "query"
    code: str = ""
    run_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("runId", "run_id"),
        pattern=r"^[\x21-\x7e]{1,64}$",
        description="the run's id: the client's choice for a new run (null: the server assigns"
        " one), then echoed back to continue it or answer its prompt",
    )
    options: dict[str, Any] | None = None


class ExecuteResult(Reply):
    status: str = Field(
        description="continued | waiting-input | finished | build-finished | clean-finished"
    )
    console: list[Any]
    exit_code: int | None
    options: dict[str, Any] | None
    files: list[Any] | None
    run_id: str


class Executed(Reply):
    result: ExecuteResult
