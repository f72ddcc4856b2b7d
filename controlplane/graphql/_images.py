"""images, alias_image and dealias_image."""

from __future__ import annotations

from typing import Any

from ariadne import MutationType, QueryType

from controlplane import images as images_db
from controlplane.errors import ImageNotFound, InvalidAPIParams
from controlplane.graphql._common import Info, admin_only, context

query = QueryType()
mutation = MutationType()
# images that came from no registry (built or imported locally) show this as their registry
LOCAL_REGISTRY = "local"


def split_reference(name: str) -> tuple[str, str, str]:
    """(registry, repository, tag) of an image name, by Docker's rules: the first path part is
    a registry when it looks like a host (has a dot or a port, or is localhost)."""
    repository, tag = name, "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag
    return LOCAL_REGISTRY, repository, tag


def _view(image: images_db.ImageView) -> dict[str, Any]:
    registry, repository, tag = split_reference(image.name)
    return {
        "id": image.name,
        "name": repository,
        "humanized_name": image.name,
        "tag": tag,
        "registry": registry,
        "architecture": image.architecture or None,
        "is_local": registry == LOCAL_REGISTRY,
        "digest": image.digest or None,
        "hash": image.digest or None,
        "size_bytes": image.size_bytes,
        "aliases": image.aliases,
        "labels": [{"key": k, "value": v} for k, v in sorted(image.labels.items())],
        "raw_labels": image.labels,
        # Shipyard images carry no resource-limit or accelerator labels (yet)
        "resource_limits": [],
        "supported_accelerators": [],
        "installed": bool(image.nodes),
        "installed_agents": image.nodes,
    }


@query.field("images")
async def resolve_images(
    _: Any,
    info: Info,
    is_installed: bool | None = None,
    is_operation: bool | None = None,
) -> list[dict[str, Any]]:
    """The images the platform knows (controlplane/images.py), as `GET /images` lists them."""
    ctx = context(info)
    if is_operation:
        return []  # Shipyard has no operational (system) images
    async with ctx.core.db() as db:
        found = await images_db.list_images(db)
    return [_view(i) for i in found if is_installed is None or bool(i.nodes) == is_installed]


@query.field("image")
async def resolve_image(
    _: Any, info: Info, reference: str, architecture: str | None = None
) -> dict[str, Any] | None:
    """A known image by name or alias, as a session would resolve it; null if none."""
    ctx = context(info)
    async with ctx.core.db() as db:
        try:
            name = await images_db.resolve(db, reference)
        except ImageNotFound:
            return None
        found = await images_db.list_images(db)
    [image] = [i for i in found if i.name == name]
    if architecture is not None and image.architecture not in ("", architecture):
        return None
    return _view(image)


@mutation.field("alias_image")
async def resolve_alias_image(
    _: Any,
    info: Info,
    alias: str,
    target: str,
    architecture: str | None = None,
) -> dict[str, Any]:
    ctx = admin_only(info)
    async with ctx.core.db() as db:
        try:
            await images_db.set_alias(db, alias, target)
        except InvalidAPIParams as exc:
            return {"ok": False, "msg": exc.msg}
        await db.commit()
    return {"ok": True, "msg": ""}


@mutation.field("dealias_image")
async def resolve_dealias_image(
    _: Any, info: Info, alias: str, architecture: str | None = None
) -> dict[str, Any]:
    ctx = admin_only(info)
    async with ctx.core.db() as db:
        await images_db.remove_alias(db, alias)
        await db.commit()
    return {"ok": True, "msg": ""}
