"""Administration over REST: keypairs, images and aliases, nodes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify
from quart_schema import validate_request, validate_response

from controlplane import images as images_db
from controlplane import keypairs, nodes
from controlplane.api.app import core, read_json, requester, require_admin
from controlplane.db.models import Keypair
from controlplane.errors import InvalidAPIParams

bp = Blueprint("admin", __name__)


def _keypair_view(kp: Keypair) -> dict[str, Any]:
    return {
        "accessKey": kp.access_key,
        "userEmail": kp.user.email,
        "isActive": kp.is_active,
        "isAdmin": kp.is_admin,
        "createdAt": kp.created_at.isoformat(),
    }


@bp.get("/admin/keypairs")
async def list_keypairs() -> dict[str, Any]:
    require_admin()
    async with core().db() as db:
        return {"items": [_keypair_view(kp) for kp in await keypairs.list_all(db)]}


@bp.post("/admin/keypairs")
async def create_keypair() -> tuple[Response, int]:
    require_admin()
    body = await read_json()
    if not isinstance(body, dict) or not isinstance(body.get("user"), str):
        raise InvalidAPIParams('send {"user": "<e-mail>", "isAdmin": false}')
    async with core().db() as db:
        keypair, secret = await keypairs.create(
            db, core().secrets, body["user"], is_admin=bool(body.get("isAdmin"))
        )
        await db.commit()
        return jsonify({**_keypair_view(keypair), "secretKey": secret}), 201


@bp.delete("/admin/keypairs/<access_key>")
async def delete_keypair(access_key: str) -> dict[str, Any]:
    admin = require_admin()
    async with core().db() as db:
        await keypairs.delete(db, access_key, requester=admin)
        await db.commit()
    return {"accessKey": access_key, "deleted": True}


def _image_view(v: images_db.ImageView) -> dict[str, Any]:
    return {
        "name": v.name,
        "source": v.source,
        "digest": v.digest,
        "sizeBytes": v.size_bytes,
        "architecture": v.architecture,
        "labels": v.labels,
        "aliases": v.aliases,
        "nodes": v.nodes,
    }


@bp.get("/images")
async def list_images() -> dict[str, Any]:
    """The images the platform knows (controlplane/images.py), with the nodes that have them."""
    requester()
    async with core().db() as db:
        return {"items": [_image_view(v) for v in await images_db.list_images(db)]}


class RegisterImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256, description="repo:tag, as the node has it")


class ForgottenImage(BaseModel):
    name: str
    forgotten: bool


@bp.post("/images")
@validate_request(RegisterImage)
async def register_image(data: RegisterImage) -> tuple[dict[str, Any], int]:
    admin = require_admin()
    async with core().db() as db:
        await images_db.register(db, data.name, admin.access_key)
        await db.commit()
        [view] = [v for v in await images_db.list_images(db) if v.name == data.name.strip()]
    return _image_view(view), 201


# <path:...>: image names have slashes ("shipyard/python:3.11")
@bp.delete("/images/<path:name>")
@validate_response(ForgottenImage)
async def forget_image(name: str) -> ForgottenImage:
    admin = require_admin()
    async with core().db() as db:
        await images_db.forget(db, name, admin.access_key)
        await db.commit()
    return ForgottenImage(name=name, forgotten=True)


@bp.post("/images/aliases")
async def alias_image() -> tuple[Response, int]:
    require_admin()
    body = await read_json()
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("alias", "target")
    ):
        raise InvalidAPIParams('send {"alias": "python", "target": "<image name>"}')
    async with core().db() as db:
        target = await images_db.set_alias(db, body["alias"], body["target"])
        await db.commit()
    return jsonify({"alias": body["alias"], "target": target}), 201


@bp.delete("/images/aliases/<alias>")
async def dealias_image(alias: str) -> dict[str, Any]:
    require_admin()
    async with core().db() as db:
        await images_db.remove_alias(db, alias)
        await db.commit()
    return {"alias": alias, "deleted": True}


@bp.get("/nodes")
async def list_nodes() -> dict[str, Any]:
    require_admin()
    async with core().db() as db:
        found = await nodes.list_nodes(db, core().hub.connected())
    return {
        "items": [
            {
                "id": n.id,
                "status": n.status,
                "architecture": n.architecture,
                "networkMode": n.network_mode,
                "availableSlots": n.available_slots,
                "firstContact": n.first_contact.isoformat(),
                "lastContact": n.last_contact.isoformat(),
            }
            for n in found
        ]
    }
