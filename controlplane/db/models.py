"""The control plane's tables (SQLAlchemy 2, portable types; Alembic migrations in migrations/).

Tenancy is modelled from the start — domains contain projects and users; keypairs belong to
users — even though the first release only manages the `default` domain and project.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from controlplane.db.types import UTCDateTime, utcnow

ACTIVE_STATUSES = ("PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATING")
# statuses in which a session holds resources on its node
OCCUPYING_STATUSES = ("SCHEDULED", "PREPARING", "RUNNING", "TERMINATING")
DEAD_STATUSES = ("TERMINATED", "CANCELLED", "ERROR")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, uuid.UUID: Uuid}


DEFAULT_POLICY = "default"  # every keypair's, user's and project's policy until an admin says
DEFAULT_SCALING_GROUP = "default"


class ResourcePolicy(Base):
    """Limits a keypair, a user or a project is under (controlplane/policies.py applies them;
    the strictest of the three wins). 0 means "no limit" for every count and duration."""

    __tablename__ = "resource_policies"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # slots missing from total_resource_slots: unlimited (UNLIMITED) or none at all (LIMITED)
    default_for_unspecified: Mapped[str] = mapped_column(String(16), default="UNLIMITED")
    total_resource_slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    max_concurrent_sessions: Mapped[int] = mapped_column(default=0)
    max_session_lifetime: Mapped[int] = mapped_column(default=0)  # seconds
    idle_timeout: Mapped[int] = mapped_column(default=0)  # seconds
    # the utilization check: a session whose cpu (and GPU, if it holds one) stayed below these
    # percentages of what it holds for a whole window ends (controlplane/idle.py)
    utilization_window: Mapped[int] = mapped_column(default=0)  # seconds
    min_cpu_util_pct: Mapped[int] = mapped_column(default=0)
    min_gpu_util_pct: Mapped[int] = mapped_column(default=0)
    max_containers_per_session: Mapped[int] = mapped_column(default=1)
    max_vfolder_count: Mapped[int] = mapped_column(default=0)
    max_vfolder_size: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes
    allowed_vfolder_hosts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # null: any scaling group / image; a list: only these
    allowed_scaling_groups: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    allowed_images: Mapped[list[str] | None] = mapped_column(JSON, default=None)


class ScalingGroup(Base):
    """A pool of nodes with its own placement policy (controlplane/scheduler.py)."""

    __tablename__ = "scaling_groups"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    scheduler: Mapped[str] = mapped_column(String(16), default="fifo")  # fifo | lifo | drf
    # {"agent_selection_strategy": "concentrated" | "dispersed", "allowed_session_types": [...]}
    scheduler_opts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScalingGroupDomain(Base):
    """Every project of the domain may use the scaling group."""

    __tablename__ = "scaling_groups_for_domains"
    scaling_group: Mapped[str] = mapped_column(
        ForeignKey("scaling_groups.name", ondelete="CASCADE"), primary_key=True
    )
    domain_name: Mapped[str] = mapped_column(
        ForeignKey("domains.name", ondelete="CASCADE"), primary_key=True
    )


class ScalingGroupProject(Base):
    """The project may use the scaling group."""

    __tablename__ = "scaling_groups_for_projects"
    scaling_group: Mapped[str] = mapped_column(
        ForeignKey("scaling_groups.name", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )


class Domain(Base):
    __tablename__ = "domains"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    domain_name: Mapped[str] = mapped_column(ForeignKey("domains.name"))
    resource_policy: Mapped[str] = mapped_column(String(64), default=DEFAULT_POLICY)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_projects_domain_name", "domain_name", "name", unique=True),)


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(256), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # superadmin | admin | user
    domain_name: Mapped[str] = mapped_column(ForeignKey("domains.name"))
    # argon2id (controlplane/passwords.py); None: the user cannot sign in with a password
    password_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    # active | inactive | deleted: only an active user's keypairs sign requests or sign in
    status: Mapped[str] = mapped_column(String(16), default="active")
    resource_policy: Mapped[str] = mapped_column(String(64), default=DEFAULT_POLICY)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    keypairs: Mapped[list[Keypair]] = relationship(back_populates="user")


class ProjectMember(Base):
    """Who is in which project; a user only sees the projects it is a member of."""

    __tablename__ = "project_members"
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class ResourcePreset(Base):
    """A named bundle of slots (`small`, `gpu-1`) users pick from (controlplane/presets.py)."""

    __tablename__ = "resource_presets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_slots: Mapped[dict[str, Any]] = mapped_column(default=dict)  # wire slots
    shared_memory: Mapped[int | None] = mapped_column(default=None)  # bytes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One state-changing API call or sign-in (controlplane/audit.py); never updated."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # who: the signing access key (or, for a sign-in, the e-mail tried) and its user's domain
    actor: Mapped[str | None] = mapped_column(String(256), default=None)
    domain_name: Mapped[str | None] = mapped_column(String(64), default=None)
    action: Mapped[str] = mapped_column(String(300))  # "POST /admin/keypairs", "sign-in"
    # what it acted on: the route's path parameters, a create's name, a mutation's arguments
    target: Mapped[str | None] = mapped_column(String(300), default=None)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    status_code: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure


class Keypair(Base):
    __tablename__ = "keypairs"
    access_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    # sealed with the control plane's secrets key (controlplane/secretbox.py), never clear
    sealed_secret_key: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    resource_policy: Mapped[str] = mapped_column(String(64), default=DEFAULT_POLICY)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[User] = relationship(back_populates="keypairs", lazy="joined")


class Node(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # ALIVE | LOST | TERMINATED
    status_info: Mapped[str] = mapped_column(String(256), default="")  # why, for a person
    architecture: Mapped[str] = mapped_column(String(16))
    network_mode: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(32))
    scaling_group: Mapped[str] = mapped_column(String(64), default="default")
    available_slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    accelerators: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cpu_cur_pct: Mapped[float] = mapped_column(default=0.0)
    mem_cur_bytes: Mapped[int] = mapped_column(default=0)
    # the node's latest statistics sample (controlplane/stats.py), None before the first
    live_stat: Mapped[dict[str, Any] | None] = mapped_column(default=None)
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
    scaling_group: Mapped[str] = mapped_column(String(64), default=DEFAULT_SCALING_GROUP)
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
    # the latest statistics sample while it runs; the last one once it ended
    live_stat: Mapped[dict[str, Any] | None] = mapped_column(default=None)
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


class SSHKeypair(Base):
    """The SSH key pair the platform keeps for a keypair (`/auth/ssh-keypair`, §10.4): its
    sessions accept the public key, and the private key is sealed like a secret key."""

    __tablename__ = "ssh_keypairs"
    access_key: Mapped[str] = mapped_column(
        ForeignKey("keypairs.access_key", ondelete="CASCADE"), primary_key=True
    )
    public_key: Mapped[str] = mapped_column(Text)  # one OpenSSH line, newline-terminated
    sealed_private_key: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class VFolder(Base):
    """A virtual folder: a directory `<host root>/<id hex>` on a storage host that outlives
    sessions (controlplane/vfolders). Owned by a user or by a project; `status` is `ready`, or
    `delete-pending` while it sits in the trash (its files kept until an admin purges it)."""

    __tablename__ = "vfolders"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(128))
    ownership_type: Mapped[str] = mapped_column(String(8))  # user | group
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), default=None)
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id"), default=None)
    creator: Mapped[str] = mapped_column(String(256))  # the creator's email
    permission: Mapped[str] = mapped_column(String(4))  # ro | rw | wd, the owners' own
    usage_mode: Mapped[str] = mapped_column(String(16), default="general")
    max_size: Mapped[int | None] = mapped_column(BigInteger, default=None)  # bytes; None: none
    cloneable: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    __table_args__ = (
        Index("ix_vfolders_user_id", "user_id"),
        Index("ix_vfolders_project_id", "project_id"),
    )


class VFolderShare(Base):
    """Another user's access to a folder: an accepted invitation or an admin's share."""

    __tablename__ = "vfolder_shares"
    vfolder_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vfolders.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    permission: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VFolderInvitation(Base):
    __tablename__ = "vfolder_invitations"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    vfolder_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vfolders.id"), index=True)
    inviter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    invitee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    permission: Mapped[str] = mapped_column(String(4))
    state: Mapped[str] = mapped_column(String(16))  # pending | accepted | rejected | canceled
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)


class VFolderMount(Base):
    """A folder a session mounts, and where; kept after the session ends (its history)."""

    __tablename__ = "vfolder_mounts"
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    vfolder_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vfolders.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(256))  # inside the container
    read_only: Mapped[bool] = mapped_column(Boolean)
    subpath: Mapped[str] = mapped_column(String(4096), default="", server_default="")
    __table_args__ = (Index("ix_vfolder_mounts_vfolder_id", "vfolder_id"),)
