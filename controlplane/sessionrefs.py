"""Sessions as their owners' calls name them (`sessions.find`), kept in memory for the calls that
come often and change nothing: running code in a session (`POST /session/<ref>`), where the
lookup was most of the control plane's time.

What a lookup answers depends on the session and its kernels, and on who asks (keypair, user:
admin reach, domain); a commit that writes any of those tables clears it all
(controlplane/memo.py), so a session that stopped, moved or ended is looked up again, and an
answer is never older than the last commit. Only running sessions are kept (the others are
looked up each time: a run is refused for them anyway, and ended kernels carry their logs). A
lookup that fails (no such session, not yours) is not kept, and owner scoping is
`sessions.find`'s, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession as DBSession
from sqlalchemy.ext.asyncio import async_sessionmaker

from controlplane import sessions
from controlplane.db.models import Kernel, Keypair, Session
from controlplane.memo import Memo, Snapshot

TABLES = ("sessions", "kernels", "keypairs", "users")


@dataclass(frozen=True)
class _Found:
    session: Snapshot[Session]
    kernels: tuple[Snapshot[Kernel], ...]


class SessionRefs:
    def __init__(self) -> None:
        self.memo: Memo[tuple[str, str, str | None], _Found] = Memo(TABLES)

    async def find(
        self,
        db: async_sessionmaker[DBSession],
        requester: Keypair,
        ref: str,
        *,
        owner_access_key: str | None = None,
    ) -> Session:
        """`sessions.find`'s answer with the session's kernels; its history is not loaded when
        it comes from memory."""
        not_running: list[Session] = []

        async def load() -> _Found | None:
            async with db() as session:
                found = await sessions.find(
                    session, requester, ref, owner_access_key=owner_access_key
                )
            if found.status != "RUNNING":
                not_running.append(found)
                return None  # not kept
            return _Found(Snapshot.of(found), tuple(Snapshot.of(k) for k in found.kernels))

        key = (requester.access_key, ref, owner_access_key)
        kept = await self.memo.get_or_load(key, load)
        if kept is None:
            return not_running[0]
        return kept.session.copy(kernels=[kernel.copy() for kernel in kept.kernels])
