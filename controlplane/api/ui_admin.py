"""The web UI's admin pages (docs/webui.md): nodes, images, keypairs and join tokens (users:
ui_users.py; resource policies and presets: ui_limits.py). Each
calls `require_admin()` first, so anyone else gets the 403 page (ui.py's error handler)."""

from __future__ import annotations

from quart import Blueprint, Response, redirect, url_for
from quart_schema import hide

from controlplane import images as images_db
from controlplane import jointokens, keypairs, nodes, tenancy
from controlplane.api import node_tokens
from controlplane.api._context import core, require_admin, require_superadmin
from controlplane.api.ui import page, problem_page
from controlplane.api.ui_auth import browser
from controlplane.db.types import utcnow
from controlplane.errors import ControlPlaneError

bp = Blueprint("ui_admin", __name__)
bp.register_error_handler(ControlPlaneError, problem_page)


@bp.get("/ui/admin/nodes")
@hide
@browser
async def nodes_page() -> Response:
    require_superadmin()  # as GET /nodes: nodes span domains
    async with core().db() as db:
        found = await nodes.list_nodes(db, core().hub.connected())
    return await page("admin_nodes.html", active="nodes", nodes=found)


@bp.get("/ui/admin/images")
@hide
@browser
async def images_page() -> Response:
    require_admin()
    async with core().db() as db:
        found = await images_db.list_images(db)
    return await page("admin_images.html", active="images", images=found)


@bp.get("/ui/admin/keypairs")
@hide
@browser
async def keypairs_page() -> Response:
    admin = require_admin()
    async with core().db() as db:  # as GET /admin/keypairs: the domain the admin manages
        found = await keypairs.list_all(db, domain_name=tenancy.managed_domain(admin))
    return await page("admin_keypairs.html", active="keypairs", keypairs=found)


async def _tokens_page(new_token: dict[str, str] | None = None, status: int = 200) -> Response:
    async with core().db() as db:
        rows = await jointokens.list_all(db)
    return await page(
        "admin_tokens.html", status, active="tokens", tokens=rows, now=utcnow(), new_token=new_token
    )


@bp.get("/ui/admin/tokens")
@hide
@browser
async def tokens_page() -> Response:
    require_admin()
    return await _tokens_page()


@bp.post("/ui/admin/tokens")
@hide
@browser
async def create_token() -> Response:
    """A join token, shown once on the page this answers with."""
    admin = require_admin()
    async with core().db() as db:
        token, expires_at = await jointokens.create(db, created_by=admin.access_key)
        await db.commit()
    shown = {"token": token, "expires_at": expires_at.strftime("%Y-%m-%d %H:%M UTC")}
    return await _tokens_page(shown, 201)


@bp.post("/ui/admin/tokens/<token_id>/revoke")
@hide
@browser
async def revoke_token(token_id: str) -> Response:
    require_admin()
    await node_tokens.revoke(token_id)
    return redirect(url_for("ui_admin.tokens_page"), 303)  # type: ignore[return-value]
