"""The control plane's long-lived state: database, connected nodes, events, runs, background jobs.

One `Core` per process; `controlplane.server` builds it and wires the parts that act on it (the
scheduler, the session lifecycle). Core imports none of them: they import Core.

Its background jobs run in the task group opened by `Core.run`, which the server keeps open for
as long as it serves. A job that fails is logged and, when it worked for a session, that session
goes to ERROR with the reason; the server keeps serving.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane import audit, keypairs, memo, passwords
from controlplane.activity import Clock, SessionActivity
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import migrate, sessionmaker
from controlplane.db.models import ACTIVE_STATUSES, OCCUPYING_STATUSES, Keypair, Session
from controlplane.dbwriter import DBWriter
from controlplane.events import Beacon, SessionEvent, SessionEvents
from controlplane.httpruns import HttpRuns
from controlplane.lookups import Lookups
from controlplane.nodehub import NodeHub
from controlplane.replays import ReplayGuard
from controlplane.secretbox import SecretBox
from controlplane.sessionrefs import SessionRefs
from controlplane.sessions import transition
from controlplane.vfolders import Hosts, transfer

log = logging.getLogger(__name__)


class Core:
    def __init__(
        self, config: ControlPlaneConfig, engine: AsyncEngine, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.engine = engine
        self.secrets = SecretBox.load_or_create(config.secrets_key_path)
        # in memory: who signs requests, the sessions that runs of code name, and what creating
        # and placing a session reads; every commit through these database sessions clears what
        # memory holds of the tables it wrote
        self.signers = keypairs.Signers(self.secrets)
        self.session_refs = SessionRefs()
        self.lookups = Lookups()
        memos: list[memo.Memo[Any, Any]] = [
            self.signers.memo,
            self.session_refs.memo,
            *self.lookups.memos,
        ]
        self.db = sessionmaker(engine, memo.session_class(memos))
        self.hub = NodeHub()
        self.replays = ReplayGuard()
        self.sign_ins = passwords.SignInGuard()
        self.activity = SessionActivity(clock or Clock())  # what the idle checks read
        self.events = SessionEvents()
        self.heartbeats = Beacon()  # fired after each node heartbeat is recorded
        self.http_runs = HttpRuns(self.hub)
        self.writer = DBWriter()
        self.audit = audit.Trail(self.db)  # written off the request path
        # a node link's database work before it is served (token checks, claim, registration)
        # runs one at a time: a thousand nodes dialing in at once would otherwise hold every
        # pooled connection, mostly in write transactions that SQLite runs one at a time anyway,
        # and the rest (API calls too) time out waiting for a connection (bench/nodesim.py)
        self.registering = anyio.Lock()
        self.vfolder_hosts = Hosts(config.effective_vfolder_hosts, config.vfolder_default_host)
        self.uploads = transfer.UploadLocks()
        self._wakers: list[Callable[[], None]] = []
        self._tg: TaskGroup | None = None
        self._stopping = False

    def on_change(self, waker: Callable[[], None]) -> None:
        """Call `waker` whenever sessions or node capacity changed (the scheduler's wake)."""
        self._wakers.append(waker)

    def changed(self) -> None:
        for waker in self._wakers:
            waker()

    def spawn(
        self,
        fn: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
        session_id: uuid.UUID | None = None,
    ) -> None:
        """Run a background job owned by the core's task group.

        If it fails, the error is logged (with the session it worked for) and that session
        goes to ERROR saying why; nothing escapes into the task group.
        """
        if self._stopping:  # what it would have done is left to recover_after_restart
            log.info("not starting %s: the control plane is stopping", fn.__qualname__)
            return
        assert self._tg is not None, "Core.run() is not running"
        self._tg.start_soon(self._guarded, fn, args, session_id)

    def mark_stopping(self) -> None:
        """The server is stopping: from now on jobs start no more, and a job that fails no longer
        fails its session, since closing the node connections makes the starts under way fail.
        Such sessions stay between states for `reconcile.recover_after_restart` to settle."""
        self._stopping = True

    @property
    def is_stopping(self) -> bool:
        return self._stopping

    async def _guarded(
        self,
        fn: Callable[..., Coroutine[Any, Any, Any]],
        args: tuple[Any, ...],
        session_id: uuid.UUID | None,
    ) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            log.exception("background job %s failed (session %s)", fn.__qualname__, session_id)
            if session_id is not None and not self._stopping:
                with anyio.CancelScope(shield=True):
                    await self._fail_session(session_id, f"{fn.__name__} failed: {exc}")

    async def _fail_session(self, session_id: uuid.UUID, reason: str) -> None:
        try:
            async with self.db() as db:
                session = await db.get(Session, session_id)
                if session is None:
                    return
                event = await transition(db, session, "ERROR", reason, expect=ACTIVE_STATUSES)
                await self.publish(db, event)
        except Exception:
            log.exception("could not record the failure of session %s", session_id)

    async def publish(self, db: DBSession, *events: SessionEvent | None) -> None:
        """Commit, then tell subscribers (and the scheduler) what changed."""
        await db.commit()
        for event in events:
            if event is not None:
                self.events.publish(event)
                self.http_runs.session_changed(event.session_id, event.status)
        # the scheduler cares for what may let a session be placed: one waiting anew, or one
        # that ended; a start or an end under way (into an occupying status) frees nothing
        if any(e is not None and e.status not in OCCUPYING_STATUSES for e in events):
            self.changed()

    async def prepare(self) -> tuple[Keypair, str, str] | None:
        """Migrate and bootstrap the admin; returns the admin keypair, its secret key and the
        admin's password when it was just made (recovery after a restart is
        reconcile.recover_after_restart's)."""
        await migrate(self.engine, self.secrets)
        self.vfolder_hosts.prepare()
        async with self.db() as db:
            await keypairs.check_secrets_key(db, self.secrets)
            admin = await keypairs.bootstrap(db, self.secrets)
            await db.commit()
        return admin

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.http_runs.expire_forever)
            tg.start_soon(self.writer.run)
            tg.start_soon(self.audit.run)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
