"""What creating and placing a session reads that rarely changes, kept in memory: which image a
reference names, the project a session goes in, the scaling groups a project may use, every
scaling group's scheduling settings, and the resource policies with who is under which.

Each is a `Memo` (controlplane/memo.py) listing the tables its answer is read from, so any
commit that writes one of them (an alias set, a project's scaling groups changed, a policy
edited, a user moved to another policy) clears it, and the next create reads the database
again. Errors (an unknown image, a project the owner is not in) are never kept: the same
request asks again. Owner scoping is unchanged: the key holds everything the answer depends on.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import apps, policies, scalinggroups, tenancy
from controlplane import images as images_db
from controlplane.db.models import Keypair, Project, ScalingGroup, User
from controlplane.memo import Memo, Snapshot

IMAGE_TABLES = ("image_registry", "image_aliases", "images")
PROJECT_TABLES = ("projects", "project_members", "domains")
GROUP_TABLES = ("scaling_groups", "scaling_groups_for_domains", "scaling_groups_for_projects")
POLICY_TABLES = ("resource_policies", "keypairs", "users", "projects")


@dataclass(frozen=True)
class PolicyBook:
    """Every resource policy, and the policy each keypair, user and project is under."""

    limits: Mapping[str, policies.Limits]
    names: Mapping[policies.Level, Mapping[str, str]]


class Lookups:
    def __init__(self) -> None:
        self._images: Memo[str, str] = Memo(IMAGE_TABLES)
        self._labels: Memo[tuple[str, str], dict[str, str]] = Memo(("images",))
        self._projects: Memo[tuple[object, ...], Snapshot[Project]] = Memo(PROJECT_TABLES)
        self._allowed: Memo[tuple[uuid.UUID, str], tuple[Snapshot[ScalingGroup], ...]] = Memo(
            GROUP_TABLES
        )
        self._groups: Memo[tuple[()], tuple[Snapshot[ScalingGroup], ...]] = Memo(GROUP_TABLES)
        self._policies: Memo[tuple[()], PolicyBook] = Memo(POLICY_TABLES)

    @property
    def memos(self) -> tuple[Memo[Any, Any], ...]:
        return (
            self._images,
            self._labels,
            self._projects,
            self._allowed,
            self._groups,
            self._policies,
        )

    async def image(self, db: DBSession, ref: str) -> str:
        """The known image `ref` names (images.resolve), refused when its labels are malformed
        (apps.check_image)."""

        async def load() -> str:
            name = await images_db.resolve(db, ref)
            await apps.check_image(db, name)
            return name

        name = await self._images.get_or_load(ref, load)
        assert name is not None  # load raises rather than finding nothing
        return name

    async def project(
        self, db: DBSession, owner: User, domain_name: str | None, project_name: str | None
    ) -> Project:
        """tenancy.resolve_project's answer (a detached copy)."""

        async def load() -> Snapshot[Project]:
            return Snapshot.of(await tenancy.resolve_project(db, owner, domain_name, project_name))

        # all that the answer depends on: who asks (role, domain) and what they named
        key = (owner.id, owner.role, owner.domain_name, domain_name, project_name)
        found = await self._projects.get_or_load(key, load)
        assert found is not None
        return found.copy()

    async def allowed_groups(self, db: DBSession, project: Project) -> list[ScalingGroup]:
        """scalinggroups.allowed_for's answer (detached copies)."""

        async def load() -> tuple[Snapshot[ScalingGroup], ...]:
            return tuple(Snapshot.of(g) for g in await scalinggroups.allowed_for(db, project))

        found = await self._allowed.get_or_load((project.id, project.domain_name), load)
        return [group.copy() for group in found or ()]

    async def scaling_groups(self, db: DBSession) -> dict[str, ScalingGroup]:
        """Every scaling group by name (detached copies)."""

        async def load() -> tuple[Snapshot[ScalingGroup], ...]:
            return tuple(Snapshot.of(g) for g in await db.scalars(select(ScalingGroup)))

        found = await self._groups.get_or_load((), load)
        return {group.columns["name"]: group.copy() for group in found or ()}

    async def image_labels(self, db: DBSession, node_id: str, image: str) -> dict[str, str]:
        """The labels of the image as the node reports it (images.labels)."""

        async def load() -> dict[str, str]:
            return await images_db.labels(db, node_id, image)

        labels = await self._labels.get_or_load((node_id, image), load)
        return dict(labels or {})

    async def policy_book(self, db: DBSession) -> PolicyBook:
        async def load() -> PolicyBook:
            keypairs = await db.execute(select(Keypair.access_key, Keypair.resource_policy))
            users = await db.execute(select(User.id, User.resource_policy))
            projects = await db.execute(select(Project.id, Project.resource_policy))
            return PolicyBook(
                await policies.load_all(db),
                {
                    "keypair": {k: p for k, p in keypairs},
                    "user": {str(k): p for k, p in users},
                    "project": {str(k): p for k, p in projects},
                },
            )

        book = await self._policies.get_or_load((), load)
        assert book is not None
        return book
