"""The control plane's tables (SQLAlchemy 2, portable types; Alembic migrations in migrations/).

Tenancy is modelled from the start — domains contain projects and users; keypairs belong to
users — even though the first release only manages the `default` domain and project.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from controlplane.db.types import UTCDateTime, utcnow

ACTIVE_STATUSES = ("PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATING")
# statuses in which a session holds resources on its node
OCCUPYING_STATUSES = ("SCHEDULED", "PREPARING", "RUNNING", "TERMINATING")
DEAD_STATUSES = ("TERMINATED", "CANCELLED", "ERROR")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, uuid.UUID: Uuid}


class Domain(Base):
    __tablename__ = "domains"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    domain_name: Mapped[str] = mapped_column(ForeignKey("domains.name"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_projects_domain_name", "domain_name", "name", unique=True),)


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(256), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # superadmin | admin | user
    domain_name: Mapped[str] = mapped_column(ForeignKey("domains.name"))
    password_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    keypairs: Mapped[list[Keypair]] = relationship(back_populates="user")


class Keypair(Base):
    __tablename__ = "keypairs"
    access_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    # sealed with the control plane's secrets key (controlplane/secretbox.py), never clear
    sealed_secret_key: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[User] = relationship(back_populates="keypairs", lazy="joined")


class Node(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # ALIVE | LOST
    architecture: Mapped[str] = mapped_column(String(16))
    network_mode: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(32))
    scaling_group: Mapped[str] = mapped_column(String(64), default="default")
    available_slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    accelerators: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cpu_cur_pct: Mapped[float] = mapped_column(default=0.0)
    mem_cur_bytes: Mapped[int] = mapped_column(default=0)
    first_contact: Mapped[datetime] = mapped_column(default=utcnow)
    last_contact: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    """An image some node has; the same name on several nodes is one row per node."""

    __tablename__ = "images"
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), primary_key=True)  # repo:tag
    digest: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(Integer)
    architecture: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the image's labels


class RegisteredImage(Base):
    """An image the platform knows (controlplane/images.py); a forgotten one keeps its row."""

    __tablename__ = "image_registry"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)  # repo:tag
    registered: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))  # recipe | admin | upgrade
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(32))  # an admin's access key


class ImageAlias(Base):
    __tablename__ = "image_aliases"
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)
    target: Mapped[str] = mapped_column(String(256))  # an image name (repo:tag)


class Session(Base):
    __tablename__ = "sessions"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    access_key: Mapped[str] = mapped_column(ForeignKey("keypairs.access_key"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    domain_name: Mapped[str] = mapped_column(ForeignKey("domains.name"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id"))
    type: Mapped[str] = mapped_column(String(16))  # INTERACTIVE | BATCH
    image: Mapped[str] = mapped_column(String(256))  # canonical name
    tag: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16))
    status_info: Mapped[str] = mapped_column(Text, default="")
    status_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status_changed: Mapped[datetime] = mapped_column(default=utcnow)
    result: Mapped[str] = mapped_column(String(16), default="UNDEFINED")  # SUCCESS | FAILURE
    requested_slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environ: Mapped[dict[str, Any]] = mapped_column(default=dict)
    startup_command: Mapped[str | None] = mapped_column(Text, default=None)
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    terminated_at: Mapped[datetime | None] = mapped_column(default=None)
    starts_at: Mapped[datetime | None] = mapped_column(default=None)  # batch: not before then
    kernels: Mapped[list[Kernel]] = relationship(back_populates="session", lazy="selectin")
    history: Mapped[list[StatusChange]] = relationship(
        back_populates="session", lazy="selectin", order_by="StatusChange.id"
    )
    __table_args__ = (
        Index("ix_sessions_access_key_name", "access_key", "name"),
        Index("ix_sessions_status", "status"),
    )


class SessionDependency(Base):
    """`session_id` starts only after `depends_on` ended with result SUCCESS."""

    __tablename__ = "session_dependencies"
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    depends_on: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id"), primary_key=True, index=True
    )


class Kernel(Base):
    __tablename__ = "kernels"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id"), index=True)
    cluster_role: Mapped[str] = mapped_column(String(16), default="main")
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id"), default=None)
    container_id: Mapped[str | None] = mapped_column(String(80), default=None)
    status: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(default=None)
    # the container's output, kept when the container is removed
    logs: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session: Mapped[Session] = relationship(back_populates="kernels")


class StatusChange(Base):
    """Every transition of a session, with when and why."""

    __tablename__ = "session_status_history"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)
    session: Mapped[Session] = relationship(back_populates="history")


class JoinToken(Base):
    """A token that lets one node join (`shipyard node token create`). Only its SHA-256 is
    stored. Unused, it expires at `expires_at`; the first node that registers with it binds it,
    and from then on it is that node's credential (the node keeps dialling in with it) until an
    admin revokes it."""

    __tablename__ = "join_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(16), unique=True)  # what admins see and revoke by
    created_by: Mapped[str] = mapped_column(String(32))  # the admin's access key
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    node_id: Mapped[str | None] = mapped_column(String(64), default=None)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class NodeIdentity(Base):
    """Which credential first claimed a node id: `cluster` (the shared node token of the
    control plane's own machine) or `join:<token id>`. Only that credential may register as
    this node again."""

    __tablename__ = "node_identities"
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    credential: Mapped[str] = mapped_column(String(32))
    bound_at: Mapped[datetime] = mapped_column(default=utcnow)
