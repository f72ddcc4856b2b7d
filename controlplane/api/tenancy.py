"""Sign-in, and administration of domains, projects, users, resource presets and the audit log.

Admins (admin keypairs) manage their own domain; a superadmin every domain, the presets and the
domains themselves (controlplane/tenancy.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Blueprint, g, request

from controlplane import audit, keypairs, presets, tenancy, users
from controlplane.api._context import core, public, requester, require_admin, require_superadmin
from controlplane.api._tenancy_models import (
    AuditItem,
    AuditList,
    AuditQuery,
    CreateDomain,
    CreatePreset,
    CreateProject,
    CreateUser,
    DomainList,
    DomainQuery,
    DomainView,
    Membership,
    PresetCheck,
    PresetDeleted,
    PresetFit,
    PresetList,
    PresetView,
    ProjectList,
    ProjectView,
    ScalingGroupUse,
    SignedIn,
    SignedInKeypair,
    SignIn,
    UpdateUser,
    UserList,
    UserQuery,
    UserView,
)
from controlplane.api._typed import body, query, returns
from controlplane.db.models import Keypair
from controlplane.errors import InsufficientPrivilege

bp = Blueprint("tenancy", __name__)
SIGN_IN_ENDPOINT = "tenancy.sign_in"  # the audit hook (api/app.py) records these as sign-ins


def _domain_scope(admin: Keypair, wanted: str | None) -> str | None:
    """The domain a listing is limited to: the one asked for, which a domain admin must manage,
    else the admin's own (None: every domain, for a superadmin)."""
    if wanted is not None:
        tenancy.require_manager(admin, wanted)
        return wanted
    return tenancy.managed_domain(admin)


@bp.post("/auth/authorize")
@public
@returns(SignedIn)
@body(SignIn)
async def sign_in(data: SignIn) -> SignedIn:
    """Sign in with e-mail and password: the answer is the user's keypair (failed attempts
    are limited per e-mail and per address)."""
    g.sign_in_email = data.username
    async with core().db() as db:
        keypair = await users.sign_in(
            db,
            core().sign_ins,
            email=data.username,
            password=data.password,
            domain_name=data.domain,
            addr=request.remote_addr or "",
            now=datetime.now(UTC),
        )
        g.sign_in_domain = keypair.user.domain_name
        return SignedIn(
            data=SignedInKeypair(
                access_key=keypair.access_key,
                secret_key=keypairs.secret_key(core().secrets, keypair),
                role=keypair.user.role,
                status=keypair.user.status,
            )
        )


# --- domains and projects -------------------------------------------------------------------


@bp.get("/admin/domains")
@returns(DomainList)
async def list_domains() -> DomainList:
    """The domains an admin manages (a superadmin: all)."""
    admin = require_admin()
    async with core().db() as db:
        found = await tenancy.list_domains(db, name=tenancy.managed_domain(admin))
    return DomainList(items=[DomainView.of(d) for d in found])


@bp.post("/admin/domains")
@returns(DomainView, 201)
@body(CreateDomain)
async def create_domain(data: CreateDomain) -> DomainView:
    """A new domain, with its `default` project (superadmin)."""
    require_superadmin()
    async with core().db() as db:
        domain = await tenancy.create_domain(db, data.name)
        await db.commit()
        return DomainView.of(domain)


@bp.get("/admin/projects")
@returns(ProjectList)
@query(DomainQuery)
async def list_projects(args: DomainQuery) -> ProjectList:
    """The projects of the domains an admin manages, with their members."""
    admin = require_admin()
    async with core().db() as db:
        found = await tenancy.list_projects(db, domain_name=_domain_scope(admin, args.domain))
        items = []
        for project in found:
            members = await tenancy.list_users(db, project_id=project.id)
            items.append(ProjectView.of(project, [u.email for u in members]))
    return ProjectList(items=items)


@bp.post("/admin/projects")
@returns(ProjectView, 201)
@body(CreateProject)
async def create_project(data: CreateProject) -> ProjectView:
    """A new project in a domain the admin manages."""
    tenancy.require_manager(require_admin(), data.domain)
    async with core().db() as db:
        project = await tenancy.create_project(db, data.domain, data.name)
        await db.commit()
        return ProjectView.of(project, [])


async def _membership(domain: str, project: str, email: str, *, member: bool) -> Membership:
    tenancy.require_manager(require_admin(), domain)
    async with core().db() as db:
        found = await tenancy.find_project(db, domain, project)
        user = await users.find(db, email)
        await tenancy.set_member(db, found, user, member=member)
        await db.commit()
    return Membership(project=project, domain_name=domain, user=email, member=member)


@bp.put("/admin/projects/<domain>/<project>/members/<email>")
@returns(Membership)
async def add_member(domain: str, project: str, email: str) -> Membership:
    """Make a user of the same domain a member of the project."""
    return await _membership(domain, project, email, member=True)


@bp.delete("/admin/projects/<domain>/<project>/members/<email>")
@returns(Membership)
async def remove_member(domain: str, project: str, email: str) -> Membership:
    """Take a user out of the project (its sessions there stay)."""
    return await _membership(domain, project, email, member=False)


# --- users ------------------------------------------------------------------------------------


@bp.get("/admin/users")
@returns(UserList)
@query(UserQuery)
async def list_users(args: UserQuery) -> UserList:
    """The users of the domains an admin manages."""
    admin = require_admin()
    async with core().db() as db:
        found = await tenancy.list_users(
            db,
            domain_name=_domain_scope(admin, args.domain),
            statuses=[args.status] if args.status else None,
        )
        projects = await tenancy.memberships(db, [u.id for u in found])
    return UserList(items=[UserView.of(u, projects[u.id]) for u in found])


@bp.post("/admin/users")
@returns(UserView, 201)
@body(CreateUser)
async def create_user(data: CreateUser) -> UserView:
    """A new user in a domain the admin manages (only a superadmin makes superadmins)."""
    admin = require_admin()
    tenancy.require_manager(admin, data.domain)
    if data.role == "superadmin":
        require_superadmin()
    async with core().db() as db:
        user = await users.create_user(
            db, data.email, role=data.role, domain_name=data.domain, password=data.password
        )
        await db.commit()
        projects = await tenancy.memberships(db, [user.id])
        return UserView.of(user, projects[user.id])


@bp.patch("/admin/users/<email>")
@returns(UserView)
@body(UpdateUser)
async def update_user(email: str, data: UpdateUser) -> UserView:
    """Change a user's status, role or password (inactive or deleted: its keypairs stop
    working)."""
    admin = require_admin()
    if data.role == "superadmin":
        require_superadmin()
    async with core().db() as db:
        user = await users.find(db, email)
        tenancy.require_manager(admin, user.domain_name)
        if user.id == admin.user_id and (data.status or data.role):
            raise InsufficientPrivilege("you cannot change your own status or role")
        await users.update_user(
            db, user, status=data.status, role=data.role, password=data.password
        )
        await db.commit()
        projects = await tenancy.memberships(db, [user.id])
        return UserView.of(user, projects[user.id])


# --- resource presets -------------------------------------------------------------------------


@bp.get("/resource/presets")
@returns(PresetList)
async def list_presets() -> PresetList:
    """Every resource preset."""
    requester()
    async with core().db() as db:
        return PresetList(presets=[PresetView.of(p) for p in await presets.list_presets(db)])


@bp.post("/resource/check-presets")
@returns(PresetCheck)
async def check_presets() -> PresetCheck:
    """Which presets fit now: free capacity of the connected nodes and the keypair's limits."""
    me = requester()
    async with core().db() as db:
        fit = await presets.check(db, me, core().hub.connected())
    slots = sorted(set(fit.free) | set(fit.keypair_using) | {"cpu", "mem"})
    infinite = dict.fromkeys(slots, "Infinity")
    unknown = dict.fromkeys(slots, "NaN")
    free = {k: fit.free.to_wire().get(k, "0") for k in slots}
    using = {k: fit.keypair_using.to_wire().get(k, "0") for k in slots}
    return PresetCheck(
        keypair_limits=infinite,
        keypair_using=using,
        keypair_remaining=infinite,
        group_limits=unknown,
        group_using=unknown,
        group_remaining=unknown,
        scaling_group_remaining=free,
        scaling_groups={tenancy.SCALING_GROUP: ScalingGroupUse(using=using, remaining=free)},
        presets=[
            PresetFit(**PresetView.of(p).model_dump(), allocatable=ok) for p, ok in fit.presets
        ],
    )


@bp.post("/admin/presets")
@returns(PresetView, 201)
@body(CreatePreset)
async def create_preset(data: CreatePreset) -> PresetView:
    """A new resource preset (superadmin)."""
    require_superadmin()
    async with core().db() as db:
        preset = await presets.create(db, data.name, data.resource_slots, data.shared_memory)
        await db.commit()
        return PresetView.of(preset)


@bp.delete("/admin/presets/<name>")
@returns(PresetDeleted)
async def delete_preset(name: str) -> PresetDeleted:
    """Remove a resource preset (superadmin)."""
    require_superadmin()
    async with core().db() as db:
        await presets.delete(db, name)
        await db.commit()
    return PresetDeleted(name=name)


# --- audit ------------------------------------------------------------------------------------


@bp.get("/admin/audit")
@returns(AuditList)
@query(AuditQuery)
async def list_audit(args: AuditQuery) -> AuditList:
    """Audit log entries, oldest first (the newest `limit`); a domain admin sees its domain's."""
    admin = require_admin()
    filters = audit.Filters(
        actor=args.actor,
        action=args.action,
        outcome=args.outcome,
        since=args.since,
        until=args.until,
        domain_name=tenancy.managed_domain(admin),
        limit=args.limit,
    )
    return AuditList(items=[AuditItem.of(e) for e in await core().audit.entries(filters)])
