"""Running the control plane: migrate, bootstrap, then serve HTTP until told to stop."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from controlplane import idle, lifecycle, nodewatch, reconcile
from controlplane.activity import Clock
from controlplane.api.app import create_app
from controlplane.config import ControlPlaneConfig
from controlplane.core import Core
from controlplane.db.engine import create_engine, dispose
from controlplane.db.models import Keypair
from controlplane.scheduler import Scheduler
from hostlib import sdnotify

log = logging.getLogger(__name__)
AUDIT_FLUSH_TIMEOUT = 10.0  # at stop, for the audit entries still queued


def write_admin_keypair(
    config: ControlPlaneConfig, keypair: Keypair, secret_key: str, password: str
) -> None:
    path = config.admin_keypair_file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "access_key": keypair.access_key,
                "secret_key": secret_key,
                "email": keypair.user.email,
                "password": password,  # for signing in (POST /auth/authorize)
            },
            f,
        )
    log.info("bootstrapped the admin keypair %s (credentials in %s)", keypair.access_key, path)


@asynccontextmanager
async def running_core(
    config: ControlPlaneConfig,
    engine: AsyncEngine,
    *,
    clock: Clock | None = None,
    idle_policy: idle.PolicyFor | None = None,  # None: from the resource policies
) -> AsyncIterator[tuple[Core, tuple[Keypair, str, str] | None]]:
    """A prepared Core with its jobs running, wired to the scheduler, the session lifecycle and
    the idle checks; also the admin keypair, its secret key and password when they were just
    bootstrapped."""
    core = Core(config, engine, clock)
    admin = await core.prepare()
    await reconcile.recover_after_restart(core)
    scheduler = Scheduler(core, on_placed=partial(lifecycle.start_placed, core))
    core.on_change(scheduler.wake)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        tg.start_soon(scheduler.run)
        tg.start_soon(idle.IdleChecker(core, idle_policy).run)
        tg.start_soon(nodewatch.watch, core)
        try:
            yield core, admin
        finally:
            with anyio.move_on_after(AUDIT_FLUSH_TIMEOUT, shield=True):
                await core.audit.flush()  # the calls answered: their entries must not be lost
        tg.cancel_scope.cancel()


async def serve(config: ControlPlaneConfig, stop: anyio.Event | None = None) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT arrives when no event is given)."""
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = create_engine(config.effective_database_url)
    try:
        hconfig = HypercornConfig()
        hconfig.bind = [f"{config.host}:{config.port}"]
        if config.tls_certfile:  # off localhost, signatures and secrets need TLS
            hconfig.certfile, hconfig.keyfile = config.tls_certfile, config.tls_keyfile
        hconfig.accesslog = None
        hconfig.graceful_timeout = 5.0
        stop = stop or anyio.Event()
        async with running_core(config, engine) as (core, admin), anyio.create_task_group() as tg:
            if admin is not None:
                write_admin_keypair(config, *admin)
            app = create_app(core)
            if not stop.is_set():
                tg.start_soon(_stop_on_signal, stop)
            tg.start_soon(_notify_when_listening, config.host, config.port)
            tg.start_soon(sdnotify.watchdog)
            log.info(
                "control plane listening on %s://%s:%d", config.scheme, config.host, config.port
            )

            async def stopping() -> None:
                await stop.wait()
                core.mark_stopping()

            await hypercorn_serve(app, hconfig, shutdown_trigger=stopping)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await dispose(engine)


async def _stop_on_signal(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return


async def _notify_when_listening(host: str, port: int) -> None:
    """Tell systemd (when it is asking, Type=notify) that we serve, once the port answers:
    Hypercorn binds inside `serve` and has no hook for after it did."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    while True:
        try:
            stream = await anyio.connect_tcp(host, port)
        except OSError:
            await anyio.sleep(0.05)
            continue
        await stream.aclose()
        sdnotify.ready(f"serving on {host}:{port}")
        return
