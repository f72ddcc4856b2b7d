"""Running code in a session: a run streams the node's output back as Backend.AI result chunks.

A chunk is `{"status", "console": [[type, text], ...], "exitCode", "options", "files"}`; its
status is "continued" while output flows and the kind of the event that ended it otherwise
("waiting-input", "build-finished", "clean-finished", "finished").
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from sqlalchemy import select

import wire
from controlplane import batch, nodecalls
from controlplane import images as images_db
from controlplane.core import Core
from controlplane.db.models import Kernel, Session
from controlplane.errors import InvalidAPIParams, SessionNotRunning
from controlplane.runs import Run


def _check_running(session: Session) -> None:
    if session.status != "RUNNING":
        detail = f": {session.status_info}" if session.status_info else ""
        raise SessionNotRunning(
            f"Session {session.name} is {session.status}{detail}",
            data={"status": session.status, "statusInfo": session.status_info},
        )


def _running(session: Session, kernel: Kernel | None) -> Kernel:
    if kernel is None or kernel.node_id is None:
        raise SessionNotRunning(f"Session {session.name} has no running kernel")
    return kernel


async def main_kernel(core: Core, session: Session) -> Kernel:
    """The session's running kernel, read now (the session may have been read before a
    destroy); SessionNotRunning (409) when there is none."""
    _check_running(session)
    async with core.db() as db:
        kernel = await db.scalar(
            select(Kernel).where(Kernel.session_id == session.id, Kernel.status == "RUNNING")
        )
    return _running(session, kernel)


def loaded_kernel(session: Session) -> Kernel:
    """The running kernel among those loaded with a session read since the last commit
    (controlplane/sessionrefs.py), which spares `main_kernel`'s query; SessionNotRunning (409)
    when there is none."""
    _check_running(session)
    return _running(session, next((k for k in session.kernels if k.status == "RUNNING"), None))


def batch_options(options: Any) -> dict[str, str | None]:
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidAPIParams("options must be an object")
    picked: dict[str, str | None] = {}
    for key in ("clean", "build", "exec"):
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidAPIParams(f"options.{key} must be a string")
        picked[key] = None if value in (None, "", "*") else value
    return picked


async def start_run(
    core: Core,
    session: Session,
    mode: str,
    code: str = "",
    options: Any = None,
    client_run_id: str | None = None,
    *,
    current: bool = False,
) -> Run:
    """Send the code to the session's kernel; the caller must `core.hub.close_run` it.

    `client_run_id` is the id the client chose for the run (None: the server's own); `current`
    says the session was read since the last commit, with its kernels (`loaded_kernel`)."""
    if mode not in ("query", "batch"):
        raise InvalidAPIParams(f"mode must be query or batch, not {mode!r}")
    if not isinstance(code, str):
        raise InvalidAPIParams("code must be a string")
    picked = batch_options(options) if mode == "batch" else {}
    kernel = loaded_kernel(session) if current else await main_kernel(core, session)
    assert kernel.node_id is not None
    commands: dict[str, str | None] = {}
    if mode == "batch":
        async with core.db() as db:
            labels = await images_db.labels(db, kernel.node_id, session.image)
        commands = batch.commands(picked, labels, session.image)
    request = wire.Execute(
        kernel_id=str(kernel.id),
        run_id=uuid.uuid4().hex,
        mode="batch" if mode == "batch" else "query",
        code=code,
        options=commands,
    )
    output = await nodecalls.execute(core.hub, kernel.node_id, request)
    core.activity.touch(session.id)  # running code is use: the idle checks (idle.py) read it
    return Run(
        request.run_id,
        session.id,
        session.access_key,
        kernel.node_id,
        str(kernel.id),
        output,
        client_run_id=client_run_id or "",
    )


@asynccontextmanager
async def open_run(
    core: Core, session: Session, mode: str, code: str = "", options: Any = None
) -> AsyncIterator[Run]:
    run = await start_run(core, session, mode, code, options)
    try:
        yield run
    finally:
        core.hub.close_run(run.run_id)
        core.activity.touch(session.id)


async def send_input(core: Core, run: Run, text: str) -> None:
    await nodecalls.send_input(core.hub, run.node_id, run.kernel_id, run.run_id, text)


async def next_chunk(run: Run, wait: float = math.inf) -> dict[str, Any]:
    """Wait up to `wait` seconds for output, then take what is there up to a boundary event."""
    console: list[list[str]] = []
    status, exit_code, options = "continued", None, None
    with anyio.move_on_after(wait):
        item: wire.RunOutput | None = await run.output.take()
        while item is not None:
            if item.kind in ("stdout", "stderr"):
                _append(console, item.kind, item.data)
            else:
                status, exit_code = item.kind, item.exit_code
                if item.kind == "finished":
                    run.end_reason = item.reason
                if item.kind == "waiting-input":
                    options = {"is_password": item.password, "prompt": item.data}
                    if item.data and not item.password:
                        # Backend.AI kernels print input()'s prompt; its client reads the
                        # answer without showing any prompt itself
                        _append(console, "stdout", item.data)
                break
            item = run.output.take_nowait()
    if status == "finished":
        run.finished = True
    run.last_used = time.monotonic()
    return {
        "status": status,
        "console": console,
        "exitCode": exit_code,
        "options": options if options is not None else {},
        "files": [],
    }


def _append(console: list[list[str]], kind: str, data: str) -> None:
    if console and console[-1][0] == kind:
        console[-1][1] += data  # coalesce consecutive writes to the same stream
    else:
        console.append([kind, data])


async def execute_collect(
    core: Core, session: Session, mode: str, *, code: str = "", options: Any = None
) -> tuple[list[list[str]], int | None, str]:
    """Run to completion without interaction; returns the console, the exit code and why it
    ended when the program did not end on its own ("" otherwise)."""
    console: list[list[str]] = []
    async with open_run(core, session, mode, code, options) as run:
        while True:
            chunk = await next_chunk(run)
            for kind, data in chunk["console"]:
                _append(console, kind, data)
            if chunk["status"] == "finished":
                return console, chunk["exitCode"], run.end_reason
            if chunk["status"] == "waiting-input":
                await send_input(core, run, "")
