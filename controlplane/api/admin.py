"""Administration over REST: keypairs, images and aliases, nodes."""

from __future__ import annotations

from quart import Blueprint

from controlplane import images as images_db
from controlplane import keypairs, nodes, tenancy, users
from controlplane.api._context import core, requester, require_admin, require_superadmin
from controlplane.api._models import (
    AliasDeleted,
    AliasView,
    CreateAlias,
    CreateKeypair,
    ImageForgotten,
    ImageItem,
    ImageList,
    KeypairCreated,
    KeypairDeleted,
    KeypairList,
    KeypairView,
    NodeItem,
    NodeList,
    RegisterImage,
)
from controlplane.api._typed import body, returns

bp = Blueprint("admin", __name__)


@bp.get("/admin/keypairs")
@returns(KeypairList)
async def list_keypairs() -> KeypairList:
    """Every keypair of the domains the admin manages."""
    domain = tenancy.managed_domain(require_admin())
    async with core().db() as db:
        found = await keypairs.list_all(db, domain_name=domain)
    return KeypairList(items=[KeypairView.of(kp) for kp in found])


@bp.post("/admin/keypairs")
@returns(KeypairCreated, 201)
@body(CreateKeypair)
async def create_keypair(data: CreateKeypair) -> KeypairCreated:
    """A new keypair for a user of a domain the admin manages; a new user is created with it
    in the admin's domain."""
    admin = require_admin()
    async with core().db() as db:
        user = await users.get_by_email(db, data.user)
        domain = user.domain_name if user is not None else admin.user.domain_name
        tenancy.require_manager(admin, domain)
        keypair, secret = await keypairs.create(
            db, core().secrets, data.user, is_admin=data.is_admin, domain_name=domain
        )
        await db.commit()
        return KeypairCreated(**KeypairView.of(keypair).model_dump(), secret_key=secret)


@bp.delete("/admin/keypairs/<access_key>")
@returns(KeypairDeleted)
async def delete_keypair(access_key: str) -> KeypairDeleted:
    """Deactivate a keypair (admin)."""
    admin = require_admin()
    async with core().db() as db:
        await keypairs.delete(db, access_key, requester=admin)
        await db.commit()
    return KeypairDeleted(access_key=access_key)


@bp.get("/images")
@returns(ImageList)
async def list_images() -> ImageList:
    """The images the platform knows (controlplane/images.py), with the nodes that have them."""
    requester()
    async with core().db() as db:
        return ImageList(items=[ImageItem.of(v) for v in await images_db.list_images(db)])


@bp.post("/images")
@returns(ImageItem, 201)
@body(RegisterImage)
async def register_image(data: RegisterImage) -> ImageItem:
    """Make an image that a node has known to the platform (admin)."""
    admin = require_admin()
    async with core().db() as db:
        await images_db.register(db, data.name, admin.access_key)
        await db.commit()
        [view] = [v for v in await images_db.list_images(db) if v.name == data.name.strip()]
    return ImageItem.of(view)


# <path:...>: image names have slashes ("shipyard/python:3.11")
@bp.delete("/images/<path:name>")
@returns(ImageForgotten)
async def forget_image(name: str) -> ImageForgotten:
    """Unlist an image and drop its aliases; nodes keep it (admin)."""
    admin = require_admin()
    async with core().db() as db:
        await images_db.forget(db, name, admin.access_key)
        await db.commit()
    return ImageForgotten(name=name, forgotten=True)


@bp.post("/images/aliases")
@returns(AliasView, 201)
@body(CreateAlias)
async def alias_image(data: CreateAlias) -> AliasView:
    """Point an alias at an image (admin)."""
    require_admin()
    async with core().db() as db:
        target = await images_db.set_alias(db, data.alias, data.target)
        await db.commit()
    return AliasView(alias=data.alias, target=target)


@bp.delete("/images/aliases/<alias>")
@returns(AliasDeleted)
async def dealias_image(alias: str) -> AliasDeleted:
    """Remove an alias (admin)."""
    require_admin()
    async with core().db() as db:
        await images_db.remove_alias(db, alias)
        await db.commit()
    return AliasDeleted(alias=alias)


@bp.get("/nodes")
@returns(NodeList)
async def list_nodes() -> NodeList:
    """Every node that ever registered, ALIVE while connected (superadmin: nodes, their pools
    and what runs on them span domains)."""
    require_superadmin()
    async with core().db() as db:
        found = await nodes.list_nodes(db, core().hub.connected())
    return NodeList(items=[NodeItem.of(n) for n in found])
