"""The web UI's users pages (docs/webui.md): list and create users, change one's role, status or
password, issue and revoke its keypairs. Every action is the REST route's own function
(`ui.api`: POST/PATCH /admin/users, POST/DELETE /admin/keypairs), so an admin reaches the users
of the domain it manages only (a superadmin every domain's), as on the API.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, redirect, url_for
from quart_schema import hide

from controlplane import keypairs, tenancy
from controlplane.api import admin as admin_api
from controlplane.api import tenancy as tenancy_api
from controlplane.api._context import core, requester, require_admin
from controlplane.api._models import CreateKeypair, KeypairCreated, KeypairList
from controlplane.api._tenancy_models import (
    CreateUser,
    DomainList,
    UpdateUser,
    UserList,
    UserQuery,
    UserView,
)
from controlplane.api.ui import api, page, problem_page
from controlplane.api.ui_auth import browser, form_as, read_form
from controlplane.errors import ControlPlaneError, ObjectNotFound

bp = Blueprint("ui_users", __name__)
bp.register_error_handler(ControlPlaneError, problem_page)

Role = Literal["superadmin", "admin", "user"]
Status = Literal["active", "inactive", "deleted"]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=256)
    password: str = Field(default="", max_length=256)  # "": signs in with a keypair only
    role: Role = "user"
    domain: str = Field(default=tenancy.DEFAULT_DOMAIN, max_length=64)


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    status: Status | None = None
    password: str = Field(default="", max_length=256)  # "": unchanged


class NewKeypair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    is_admin: Literal["on"] | None = None  # a checkbox


def _problem(title: str, exc: ControlPlaneError) -> dict[str, str]:
    return {"title": title, "msg": exc.msg, "status": str(exc.status)}


def _status(problem: dict[str, str] | None, ok: int = 200) -> int:
    """The page's status: the refused request's (400, 403, 404), else `ok`."""
    return int(problem["status"]) if problem else ok


async def _users_page(
    problem: dict[str, str] | None = None, form: NewUser | None = None
) -> Response:
    listed: UserList = await api(tenancy_api.list_users, args=UserQuery())
    domains: DomainList = await api(tenancy_api.list_domains)
    return await page(
        "admin_users.html",
        _status(problem),
        active="users",
        users=listed.items,
        domains=[d.name for d in domains.items],
        form=form or NewUser(email="", domain=requester().user.domain_name),
        problem=problem,
    )


@bp.get("/ui/admin/users")
@hide
@browser
async def users_page() -> Response:
    require_admin()
    return await _users_page()


@bp.post("/ui/admin/users")
@hide
@browser
async def create_user() -> Response:
    require_admin()
    form = await read_form(NewUser)
    try:
        data = form_as(
            CreateUser,
            {
                "email": form.email.strip(),
                "role": form.role,
                "domain": form.domain,
                "password": form.password or None,
            },
        )
        await api(tenancy_api.create_user, data=data)
    except ControlPlaneError as exc:
        kept = form.model_copy(update={"password": ""})  # a password is never sent back
        return await _users_page(_problem("The user was not created", exc), kept)
    return redirect(url_for("ui_users.user_page", email=data.email), 303)  # type: ignore[return-value]


async def _user(email: str) -> UserView:
    """The user, if the admin manages its domain (else a 404, as if there were none)."""
    listed: UserList = await api(tenancy_api.list_users, args=UserQuery())
    for user in listed.items:
        if user.email == email:
            return user
    raise ObjectNotFound(f"there is no user {email!r}")


async def _user_page(
    email: str,
    problem: dict[str, str] | None = None,
    new_keypair: KeypairCreated | None = None,
    status: int = 200,
) -> Response:
    user = await _user(email)
    listed: KeypairList = await api(admin_api.list_keypairs)
    return await page(
        "admin_user.html",
        _status(problem, status),
        active="users",
        user=user,
        keypairs=[k for k in listed.items if k.user_email == email],
        new_keypair=new_keypair,
        problem=problem,
    )


@bp.get("/ui/admin/users/<email>")
@hide
@browser
async def user_page(email: str) -> Response:
    require_admin()
    return await _user_page(email)


@bp.post("/ui/admin/users/<email>")
@hide
@browser
async def change_user(email: str) -> Response:
    """Set the role, the status (inactive: its keypairs stop working) or a new password; only
    what differs is sent, so an admin may save its own page without changing its own role."""
    require_admin()
    form = await read_form(UserChange)
    user = await _user(email)
    change = {
        "role": form.role if form.role not in (None, user.role) else None,
        "status": form.status if form.status not in (None, user.status) else None,
        "password": form.password or None,
    }
    try:
        data = form_as(UpdateUser, {k: v for k, v in change.items() if v is not None})
        await api(tenancy_api.update_user, email=email, data=data)
    except ControlPlaneError as exc:
        return await _user_page(email, _problem("The user was not changed", exc))
    return redirect(url_for("ui_users.user_page", email=email), 303)  # type: ignore[return-value]


@bp.post("/ui/admin/users/<email>/keypairs")
@hide
@browser
async def issue_keypair(email: str) -> Response:
    """A new keypair for the user; its secret key is shown on this answer only."""
    require_admin()
    form = await read_form(NewKeypair)
    await _user(email)  # the API would make a user that does not exist: here it is a 404
    try:
        data = form_as(CreateKeypair, {"user": email, "isAdmin": form.is_admin == "on"})
        made: KeypairCreated = await api(admin_api.create_keypair, data=data)
    except ControlPlaneError as exc:
        return await _user_page(email, _problem("No keypair was issued", exc))
    return await _user_page(email, new_keypair=made, status=201)


@bp.post("/ui/admin/keypairs/<access_key>/revoke")
@hide
@browser
async def revoke_keypair(access_key: str) -> Response:
    """Deactivate a keypair (DELETE /admin/keypairs/<access_key>), then show its user."""
    require_admin()
    await api(admin_api.delete_keypair, access_key=access_key)
    async with core().db() as db:
        keypair = await keypairs.get_keypair(db, access_key)
        assert keypair is not None  # deactivated, never removed
        email = keypair.user.email
    return redirect(url_for("ui_users.user_page", email=email), 303)  # type: ignore[return-value]
