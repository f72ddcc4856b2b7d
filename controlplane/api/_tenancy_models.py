"""Bodies and answers of sign-in, domains, projects, users, resource presets and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from controlplane import audit, tenancy
from controlplane.api._typed import CompatRequest, Query, Reply, Request
from controlplane.db.models import AuditEntry, Domain, Project, ResourcePreset, User

_NAME = Field(min_length=1, max_length=64, pattern=tenancy.NAME_PATTERN)
_EMAIL = Field(min_length=3, max_length=256, description="the user's e-mail address")


# --- sign-in ------------------------------------------------------------------------------------


class SignIn(CompatRequest):
    """POST /auth/authorize, as Backend.AI's manager takes it."""

    type: Literal["keypair"] = "keypair"
    domain: str | None = Field(default=None, max_length=64)
    username: str = Field(min_length=1, max_length=256, description="the user's e-mail")
    password: str = Field(min_length=1, max_length=256)


class SignedInKeypair(Reply):
    access_key: str = Field(alias="access_key")
    secret_key: str = Field(alias="secret_key")
    role: str
    status: str


class SignedIn(Reply):
    data: SignedInKeypair


# --- domains and projects -------------------------------------------------------------------


class CreateDomain(Request):
    name: str = _NAME


class DomainView(Reply):
    name: str
    created_at: str

    @classmethod
    def of(cls, d: Domain) -> DomainView:
        return cls(name=d.name, created_at=d.created_at.isoformat())


class DomainList(Reply):
    items: list[DomainView]


class DomainQuery(Query):
    domain: str | None = Field(default=None, max_length=64)


class CreateProject(Request):
    domain: str = Field(min_length=1, max_length=64)
    name: str = _NAME


class ProjectView(Reply):
    id: str
    name: str
    domain_name: str
    members: list[str]
    created_at: str

    @classmethod
    def of(cls, p: Project, members: list[str]) -> ProjectView:
        return cls(
            id=str(p.id),
            name=p.name,
            domain_name=p.domain_name,
            members=members,
            created_at=p.created_at.isoformat(),
        )


class ProjectList(Reply):
    items: list[ProjectView]


class Membership(Reply):
    project: str
    domain_name: str
    user: str
    member: bool


# --- users ------------------------------------------------------------------------------------


class CreateUser(Request):
    email: str = _EMAIL
    role: Literal["superadmin", "admin", "user"] = "user"
    domain: str = Field(default=tenancy.DEFAULT_DOMAIN, min_length=1, max_length=64)
    password: str | None = Field(default=None, min_length=8, max_length=256)


class UpdateUser(Request):
    status: Literal["active", "inactive", "deleted"] | None = None
    role: Literal["superadmin", "admin", "user"] | None = None
    password: str | None = Field(default=None, min_length=8, max_length=256)


class UserView(Reply):
    email: str
    role: str
    status: str
    domain_name: str
    projects: list[str]
    has_password: bool
    created_at: str

    @classmethod
    def of(cls, u: User, projects: list[Project]) -> UserView:
        return cls(
            email=u.email,
            role=u.role,
            status=u.status,
            domain_name=u.domain_name,
            projects=[p.name for p in projects],
            has_password=u.password_hash is not None,
            created_at=u.created_at.isoformat(),
        )


class UserList(Reply):
    items: list[UserView]


class UserQuery(DomainQuery):
    status: Literal["active", "inactive", "deleted"] | None = None


# --- resource presets -------------------------------------------------------------------------


class CreatePreset(Request):
    name: str = _NAME
    resource_slots: dict[str, str] = Field(
        alias="resourceSlots", description='slot quantities, e.g. {"cpu": "2", "mem": "4g"}'
    )
    shared_memory: str | None = Field(default=None, alias="sharedMemory", max_length=32)


class PresetView(Reply):
    name: str
    resource_slots: dict[str, str] = Field(alias="resource_slots")
    shared_memory: str | None = Field(alias="shared_memory")

    @classmethod
    def of(cls, p: ResourcePreset) -> PresetView:
        shmem = str(p.shared_memory) if p.shared_memory is not None else None
        return cls(name=p.name, resource_slots=dict(p.resource_slots), shared_memory=shmem)


class PresetList(Reply):
    presets: list[PresetView]


class PresetDeleted(Reply):
    name: str
    deleted: Literal[True] = True


class PresetFit(PresetView):
    allocatable: bool


class ScalingGroupUse(Reply):
    using: dict[str, str]
    remaining: dict[str, str]


class PresetCheck(Reply):
    """POST /resource/check-presets (docs/backendai-api.md §13.4): slot maps with string values."""

    keypair_limits: dict[str, str] = Field(alias="keypair_limits")
    keypair_using: dict[str, str] = Field(alias="keypair_using")
    keypair_remaining: dict[str, str] = Field(alias="keypair_remaining")
    group_limits: dict[str, str] = Field(alias="group_limits")
    group_using: dict[str, str] = Field(alias="group_using")
    group_remaining: dict[str, str] = Field(alias="group_remaining")
    scaling_group_remaining: dict[str, str] = Field(alias="scaling_group_remaining")
    scaling_groups: dict[str, ScalingGroupUse] = Field(alias="scaling_groups")
    presets: list[PresetFit]


# --- audit ------------------------------------------------------------------------------------


class AuditQuery(Query):
    actor: str | None = Field(default=None, max_length=256, description="an access key or e-mail")
    action: str | None = Field(default=None, max_length=300, description="a part of the action")
    outcome: Literal["success", "failure"] | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=audit.MAX_PAGE, ge=1, le=audit.MAX_PAGE)


class AuditItem(Reply):
    id: int
    at: str
    actor: str | None
    domain_name: str | None
    action: str
    target: str | None
    remote_addr: str
    status_code: int
    outcome: str

    @classmethod
    def of(cls, e: AuditEntry) -> AuditItem:
        return cls(
            id=e.id,
            at=e.at.isoformat(),
            actor=e.actor,
            domain_name=e.domain_name,
            action=e.action,
            target=e.target,
            remote_addr=e.remote_addr,
            status_code=e.status_code,
            outcome=e.outcome,
        )


class AuditList(Reply):
    items: list[AuditItem]
