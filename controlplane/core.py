"""The control plane's long-lived state: database, connected nodes, events, scheduler.

One `Core` per process. Its background jobs run in the task group opened by `Core.run`, which
the server keeps open for as long as it serves.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import keypairs
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import migrate, sessionmaker
from controlplane.db.models import Keypair, Node, Session
from controlplane.events import SessionEvent, SessionEvents
from controlplane.nodehub import NodeHub
from controlplane.replays import ReplayGuard
from controlplane.secretbox import SecretBox


class Core:
    def __init__(self, config: ControlPlaneConfig, engine: AsyncEngine) -> None:
        from controlplane.scheduler import Scheduler  # the scheduler needs Core's type only

        self.config = config
        self.engine = engine
        self.db = sessionmaker(engine)
        self.hub = NodeHub()
        self.secrets = SecretBox.load_or_create(config.secrets_key_path)
        self.replays = ReplayGuard()
        self.events = SessionEvents()
        self.scheduler = Scheduler(self)
        self._tg: TaskGroup | None = None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run a background job owned by the core's task group."""
        assert self._tg is not None, "Core.run() is not running"
        self._tg.start_soon(fn, *args)

    async def publish(self, db: DBSession, *events: SessionEvent | None) -> None:
        """Commit, then tell subscribers (and the scheduler) what changed."""
        await db.commit()
        for event in events:
            if event is not None:
                self.events.publish(event)
        if any(e is not None for e in events):
            self.scheduler.wake()

    async def prepare(self) -> tuple[Keypair, str] | None:
        """Migrate, bootstrap the admin (its keypair and secret key when made now), and forget
        connections of a previous process."""
        await migrate(self.engine, self.secrets)
        async with self.db() as db:
            await keypairs.check_secrets_key(db, self.secrets)
            admin = await keypairs.bootstrap(db, self.secrets)
            # no node is connected to a process that just started
            await db.execute(update(Node).values(status="LOST"))
            # starts interrupted by a restart are retried; a node that already made the
            # container reports it when it registers, and the session is adopted then
            for session in await db.scalars(
                select(Session).where(Session.status.in_(("SCHEDULED", "PREPARING")))
            ):
                from controlplane.sessions import transition

                await transition(
                    db,
                    session,
                    "PENDING",
                    "control plane restarted while starting",
                    expect=("SCHEDULED", "PREPARING"),
                    node_id=None,
                )
            await db.commit()
        return admin

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.scheduler.run)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
