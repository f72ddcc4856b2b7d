"""images, alias_image and dealias_image."""

from __future__ import annotations

from typing import Any

from ariadne import MutationType, QueryType

from controlplane import images as images_db
from controlplane.errors import InvalidAPIParams
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


@query.field("images")
async def resolve_images(
    _: Any,
    info: Info,
    is_installed: bool | None = None,
    is_operation: bool | None = None,
) -> list[dict[str, Any]]:
    ctx = context(info)
    if is_operation:
        return []  # Shipyard has no operational (system) images
    async with ctx.core.db() as db:
        found = await images_db.list_images(db)
    # every image listed is on some node; is_installed=false asks for none of them
    if is_installed is False:
        return []
    views = []
    for image in found:
        registry, repository, tag = split_reference(image.name)
        views.append(
            {
                "id": image.name,
                "name": repository,
                "humanized_name": image.name,
                "tag": tag,
                "registry": registry,
                "architecture": image.architecture,
                "is_local": registry == LOCAL_REGISTRY,
                "digest": image.digest,
                "hash": image.digest,
                "size_bytes": image.size_bytes,
                "aliases": image.aliases,
                "labels": [{"key": k, "value": v} for k, v in sorted(image.labels.items())],
                "raw_labels": image.labels,
                # Shipyard images carry no resource-limit or accelerator labels (yet)
                "resource_limits": [],
                "supported_accelerators": [],
                "installed": True,
                "installed_agents": image.nodes,
            }
        )
    return views


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
