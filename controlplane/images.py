"""The images the platform knows, where they are, and their aliases (docs/backendai-api.md §8).

Two records: what each node has (`images`, replaced on every report: name, digest, size,
architecture, labels), and what the platform knows (`image_registry`). Only known images are
listed, resolved for new sessions, and aliased. An image becomes known

- by recipe: a node reports an image built by `shipyard image build` (it carries the recipe's
  revision label) that the registry has never seen;
- by an admin: `shipyard image register NAME` (`POST /images`), for an image some node has, for
  example one loaded with `docker load` or built by hand with the kernel label.

`shipyard image forget NAME` (`DELETE /images/<name>`) makes it unknown again and removes its
aliases; the registry keeps the row, so a recipe image stays forgotten when its node reports it
again. Sessions already running keep running. A node reporting a labelled image that nobody
registered changes nothing but the node's own record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

import wire
from controlplane.db.models import Image, ImageAlias, RegisteredImage
from controlplane.db.types import utcnow
from controlplane.errors import ImageNotFound, InvalidAPIParams

RECIPE_LABEL = "ai.shipyard.recipe.revision"  # set by the recipes in packaging/kernelimages
ALIASES_LABEL = "ai.shipyard.aliases"


@dataclass
class ImageView:
    name: str
    source: str  # "recipe" | "admin" | "upgrade" (known before the registry existed)
    digest: str = ""  # the node-reported values are empty while no node has the image
    size_bytes: int = 0
    architecture: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)


def _candidates(ref: str) -> list[str]:
    """Names an image reference may stand for: as given, and with the default tag."""
    last = ref.rsplit("/", 1)[-1]
    return [ref] if ":" in last or "@" in last else [ref, f"{ref}:latest"]


async def resolve(db: DBSession, ref: str) -> str:
    """The canonical name of a known image for a reference or an alias; ImageNotFound if none.

    One query reads the known images the reference names and the known target of the alias
    of that name; a name wins over an alias."""
    ref = ref.strip()
    candidates = _candidates(ref)
    aliased = select(ImageAlias.target).where(ImageAlias.alias == ref).scalar_subquery()
    found = set(
        await db.scalars(
            select(RegisteredImage.name).where(
                RegisteredImage.registered,
                RegisteredImage.name.in_(candidates) | (RegisteredImage.name == aliased),
            )
        )
    )
    for name in [*candidates, *found]:  # the alias's target is the one found beyond these
        if name in found:
            return name
    raise ImageNotFound(f"Unknown image references: ref:{ref!r}, alias:{ref!r}")


async def sync_node_images(db: DBSession, node_id: str, images: list[wire.ImageInfo]) -> None:
    """Replace what we know of a node's images; register recipe images never seen before."""
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
        if info.labels.get(RECIPE_LABEL) and await db.get(RegisteredImage, info.name) is None:
            db.add(RegisteredImage(name=info.name, registered=True, source="recipe"))
            await _adopt_aliases(db, info.name, info.aliases)
    await db.flush()


async def _adopt_aliases(db: DBSession, name: str, aliases: list[str]) -> None:
    """The aliases an image declares (label ai.shipyard.aliases) that nothing else claims."""
    for alias in aliases:
        if alias and await db.get(ImageAlias, alias) is None:
            db.add(ImageAlias(alias=alias, target=name))


async def labels(db: DBSession, node_id: str, name: str) -> dict[str, str]:
    """The labels of the image `name` as the node `node_id` reported it."""
    image = await db.get(Image, (node_id, name))
    return {str(k): str(v) for k, v in (image.labels if image is not None else {}).items()}


async def list_images(db: DBSession) -> list[ImageView]:
    """The known images, each with what the nodes that have it report."""
    rows = await db.scalars(
        select(RegisteredImage).where(RegisteredImage.registered).order_by(RegisteredImage.name)
    )
    views = {row.name: ImageView(row.name, row.source) for row in rows}
    for image in await db.scalars(select(Image).order_by(Image.name, Image.node_id)):
        view = views.get(image.name)
        if view is None:
            continue
        if not view.nodes:
            view.digest, view.size_bytes = image.digest, image.size_bytes
            view.architecture = image.architecture
            view.labels = {str(k): str(v) for k, v in image.labels.items()}
        view.nodes.append(image.node_id)
    for alias in await db.scalars(select(ImageAlias).order_by(ImageAlias.alias)):
        if alias.target in views:
            views[alias.target].aliases.append(alias.alias)
    return list(views.values())


async def register(db: DBSession, name: str, by: str) -> None:
    """Make an image some node has known (again)."""
    name = name.strip()
    reported = await db.scalar(select(Image).where(Image.name == name).limit(1))
    if reported is None:
        raise ImageNotFound(
            f"No node has the image {name!r}: build or load it on a node first"
            " (`shipyard image build`, `docker load`), then register it."
        )
    row = await db.get(RegisteredImage, name)
    if row is None:
        row = RegisteredImage(name=name, registered=True, source="admin")
        db.add(row)
    row.registered, row.source, row.changed_at, row.changed_by = True, "admin", utcnow(), by
    aliases = [a.strip() for a in str(reported.labels.get(ALIASES_LABEL, "")).split(",")]
    await _adopt_aliases(db, name, aliases)
    await db.flush()


async def forget(db: DBSession, name: str, by: str) -> None:
    """Make a known image unknown; its aliases go with it."""
    row = await db.get(RegisteredImage, name)
    if row is None or not row.registered:
        raise ImageNotFound(f"No known image {name!r}.")
    row.registered, row.changed_at, row.changed_by = False, utcnow(), by
    await db.execute(delete(ImageAlias).where(ImageAlias.target == name))
    await db.flush()


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
