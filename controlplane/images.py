"""Images the nodes report, and aliases resolved server-side (docs/backendai-api.md §8)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

import wire
from controlplane.db.models import Image, ImageAlias
from controlplane.errors import ImageNotFound, InvalidAPIParams


@dataclass
class ImageView:
    name: str
    digest: str
    size_bytes: int
    architecture: str
    labels: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)


def _candidates(ref: str) -> list[str]:
    """Names an image reference may stand for: as given, and with the default tag."""
    last = ref.rsplit("/", 1)[-1]
    return [ref] if ":" in last or "@" in last else [ref, f"{ref}:latest"]


async def resolve(db: DBSession, ref: str) -> str:
    """The canonical image name for a reference or an alias; ImageNotFound if neither."""
    ref = ref.strip()
    known = set(await db.scalars(select(Image.name).distinct()))
    for candidate in _candidates(ref):
        if candidate in known:
            return candidate
    alias = await db.get(ImageAlias, ref)
    if alias is not None and alias.target in known:
        return alias.target
    raise ImageNotFound(f"Unknown image references: ref:{ref!r}, alias:{ref!r}")


async def sync_node_images(db: DBSession, node_id: str, images: list[wire.ImageInfo]) -> None:
    """Replace what we know of a node's images; adopt aliases the images declare if unclaimed."""
    await db.execute(delete(Image).where(Image.node_id == node_id))
    for info in images:
        db.add(
            Image(
                node_id=node_id,
                name=info.name,
                digest=info.digest,
                size_bytes=info.size_bytes,
                architecture=info.architecture,
                labels=dict(info.labels),
            )
        )
        for alias in info.aliases:
            if alias and await db.get(ImageAlias, alias) is None:
                db.add(ImageAlias(alias=alias, target=info.name))
    await db.flush()


async def labels(db: DBSession, node_id: str, name: str) -> dict[str, str]:
    """The labels of the image `name` as the node `node_id` reported it."""
    image = await db.get(Image, (node_id, name))
    return {str(k): str(v) for k, v in (image.labels if image is not None else {}).items()}


async def list_images(db: DBSession) -> list[ImageView]:
    views: dict[str, ImageView] = {}
    for image in await db.scalars(select(Image).order_by(Image.name, Image.node_id)):
        view = views.setdefault(
            image.name,
            ImageView(
                image.name,
                image.digest,
                image.size_bytes,
                image.architecture,
                {str(k): str(v) for k, v in image.labels.items()},
            ),
        )
        view.nodes.append(image.node_id)
    for alias in await db.scalars(select(ImageAlias).order_by(ImageAlias.alias)):
        if alias.target in views:
            views[alias.target].aliases.append(alias.alias)
    return list(views.values())


async def set_alias(db: DBSession, alias: str, target: str) -> str:
    alias = alias.strip()
    if not alias or len(alias) > 128 or any(c.isspace() for c in alias):
        raise InvalidAPIParams("an alias is 1-128 characters without spaces")
    canonical = await resolve(db, target)
    row = await db.get(ImageAlias, alias)
    if row is None:
        db.add(ImageAlias(alias=alias, target=canonical))
    else:
        row.target = canonical
    await db.flush()
    return canonical


async def remove_alias(db: DBSession, alias: str) -> None:
    row = await db.get(ImageAlias, alias)
    if row is None:
        raise ImageNotFound(f"No alias {alias!r}.")
    await db.delete(row)
    await db.flush()
