"""What happens to sessions the users ask for: creation, starting their kernels once the
scheduler placed them, waiting for the start, destruction and batch runs.

What nodes report (registration, kernel exits, lost nodes) is `controlplane.reconcile`.
"""

from __future__ import annotations

import math
import signal
import uuid
from typing import Any

import anyio
from sqlalchemy import select

import wire
from controlplane import apps, keypairs, nodecalls, pipelines, scalinggroups, tenancy, vfolders
from controlplane import images as images_db
from controlplane import sessions as sessions_db
from controlplane.core import Core
from controlplane.db.models import Kernel, Keypair, Session, SessionDependency, StatusChange
from controlplane.errors import (
    InsufficientPrivilege,
    InvalidAPIParams,
    NodeDisconnected,
    NodeUnavailable,
    SessionAlreadyExists,
)
from controlplane.events import SessionEvent
from controlplane.execution import execute_collect

MAX_KEPT_LOGS = 256 * 1024
STARTED = ("RUNNING", "ERROR", "TERMINATING", "TERMINATED", "CANCELLED")


async def create_session(
    core: Core, requester: Keypair, params: sessions_db.CreateParams
) -> tuple[Session, bool]:
    """Validate and enqueue; returns (session, created). Nothing is written on a bad request."""
    async with core.db() as db:
        owner = requester
        if params.owner_access_key and params.owner_access_key != requester.access_key:
            if not requester.is_admin:
                raise InsufficientPrivilege("only admins may create sessions for another keypair")
            other = await keypairs.get_active(db, params.owner_access_key)
            if other is None:
                raise InvalidAPIParams(f"no active keypair {params.owner_access_key}")
            owner = other
        image = await images_db.resolve(db, params.image)
        await apps.check_image(db, image)
        existing = await sessions_db.find_active_by_name(db, owner.access_key, params.name)
        if existing is not None:
            if params.reuse and existing.image == image:
                return existing, False
            raise SessionAlreadyExists(
                f"A session named {params.name!r} is already active.",
                data={"existingSessionId": str(existing.id)},
            )
        await sessions_db.check_satisfiable(db, params.resources)
        dependencies = await pipelines.resolve_dependencies(db, owner, params.dependencies)
        starts_at = None
        if params.starts_at is not None:
            try:
                starts_at = pipelines.parse_starts_at(params.starts_at, core.activity.clock.now())
            except ValueError as exc:
                raise InvalidAPIParams(str(exc)) from exc
        project = await tenancy.resolve_project(db, owner.user, params.domain, params.group)
        scaling_group = await scalinggroups.choose(db, project, params.scaling_group, params.type)
        session = Session(
            name=params.name,
            access_key=owner.access_key,
            user_id=owner.user_id,
            domain_name=project.domain_name,
            project_id=project.id,
            type=params.type,
            image=image,
            tag=params.tag,
            status="PENDING",
            status_info="enqueued",
            requested_slots=params.resources.to_wire(),
            scaling_group=scaling_group,
            environ=params.environ,
            startup_command=params.startup_command,
            starts_at=starts_at,
        )
        db.add(session)
        await db.flush()
        await vfolders.mounts.attach(db, core.vfolder_hosts, session, owner.user, params.mounts)
        db.add_all(SessionDependency(session_id=session.id, depends_on=d) for d in dependencies)
        db.add(StatusChange(session_id=session.id, status="PENDING", reason="enqueued"))
        event = SessionEvent(session.id, session.name, session.access_key, "PENDING", "enqueued")
        await core.publish(db, event)
        return session, True


async def wait_started(core: Core, session_id: uuid.UUID, max_wait: float) -> str:
    """Block until the session leaves the starting states; "TIMEOUT" if max_wait (>0) runs out."""
    async with core.events.subscribe() as events:
        async with core.db() as db:
            session = await db.get(Session, session_id)
            assert session is not None
            if session.status in STARTED:
                return session.status
        with anyio.move_on_after(max_wait if max_wait > 0 else math.inf):
            async for event in events:
                if event.session_id == session_id and event.status in STARTED:
                    return event.status
        return "TIMEOUT"


def start_placed(core: Core, session_id: uuid.UUID) -> None:
    """The scheduler placed the session on a node: start its kernel in the background."""
    core.spawn(start_kernel, core, session_id, session_id=session_id)


async def start_kernel(core: Core, session_id: uuid.UUID) -> None:
    """SCHEDULED -> PREPARING -> RUNNING (or ERROR with the node's reason)."""
    async with core.db() as db:
        session = await db.get(Session, session_id)
        if session is None or session.node_id is None:
            return
        node_id = session.node_id
        event = await sessions_db.transition(
            db,
            session,
            "PREPARING",
            f"creating the container on node {node_id}",
            expect=("SCHEDULED",),
        )
        if event is None:
            return
        kernel = Kernel(session_id=session.id, node_id=node_id, status="PREPARING")
        db.add(kernel)
        await core.publish(db, event)
        request = wire.CreateKernel(
            req_id="",
            kernel_id=str(kernel.id),
            session_id=str(session.id),
            owner_access_key=session.access_key,
            image=session.image,
            slots=session.requested_slots,
            environ=session.environ,
            mounts=await vfolders.mounts.for_kernel(db, core.vfolder_hosts, session.id),
        )
    container_id: str | None = None
    disconnected = False
    try:
        container_id, failure = await nodecalls.create_kernel(core.hub, node_id, request), ""
    except NodeUnavailable as exc:
        if core.is_stopping:  # our own links are closing: it is settled after the restart
            return
        disconnected, failure = isinstance(exc, NodeDisconnected), exc.msg
    async with core.db() as db:
        session = await db.get(Session, session_id)
        kernel_row = await db.get(Kernel, kernel.id)
        assert session is not None and kernel_row is not None
        if disconnected:
            # the container may exist: when the node registers again it is adopted (or removed
            # and the start retried), as after a restart of the control plane (reconcile.py)
            event = await sessions_db.transition(
                db,
                session,
                "PENDING",
                f"{failure} while starting; retried or adopted",
                expect=("PREPARING",),
                node_id=None,
            )
            if event is not None:
                await core.publish(db, event)
                return
        if container_id is None:
            event = await sessions_db.transition(
                db,
                session,
                "ERROR",
                f"could not start: {failure}",
                expect=("PREPARING", "TERMINATING"),
            )
            if event is not None:  # else adopted meanwhile, when the node registered again
                kernel_row.status = "ERROR"
            await core.publish(db, event)
            return
        kernel_row.container_id = container_id
        event = await sessions_db.transition(
            db,
            session,
            "RUNNING",
            f"container {container_id[:12]} on {node_id}",
            expect=("PREPARING",),
        )
        if event is not None:
            kernel_row.status = "RUNNING"
        await core.publish(db, event)
        batch = session.type == "BATCH"
    if event is None:
        # destroyed while it was starting: the container must not outlive the session
        await nodecalls.destroy_kernel(core.hub, node_id, str(kernel.id))
        return
    if batch:
        await run_batch(core, session_id)


async def destroy_session(core: Core, session: Session, *, forced: bool = False) -> dict[str, Any]:
    """Terminate a session and remove its containers; returns the stats the API reports."""
    async with core.db() as db:
        if session.status in ("PENDING", "SCHEDULED"):
            event = await sessions_db.transition(
                db, session, "CANCELLED", "cancelled by the user", expect=("PENDING", "SCHEDULED")
            )
            if event is not None:
                await core.publish(db, event)
                return {"status": "cancelled"}
        event = await sessions_db.transition(
            db,
            session,
            "TERMINATING",
            "termination requested by the user",
            expect=("PREPARING", "RUNNING", "ERROR"),
        )
        await core.publish(db, event)
    # shielded: once asked, the container goes even if the client hangs up
    with anyio.CancelScope(shield=True):
        await finish_termination(core, session.id, "terminated by the user", forced=forced)
    return {"status": "terminated"}


async def finish_termination(
    core: Core, session_id: uuid.UUID, reason: str, *, forced: bool = False
) -> None:
    """Remove the session's containers (keeping their last logs), then TERMINATED.

    NodeUnavailable if a node cannot be reached, unless `forced`: then the session ends
    anyway and the container is removed when its node registers again.
    """
    async with core.db() as db:
        kernels = list(await db.scalars(select(Kernel).where(Kernel.session_id == session_id)))
    ended: dict[uuid.UUID, wire.KernelDestroyed] = {}
    for kernel in kernels:
        if kernel.node_id is None:
            continue
        try:  # an exited container (a TERMINATED kernel) is removed too
            ended[kernel.id] = await nodecalls.destroy_kernel(
                core.hub, kernel.node_id, str(kernel.id)
            )
        except NodeUnavailable as exc:
            if kernel.status == "TERMINATED":
                continue  # removed already, or when its node registers again
            if not forced:
                raise
            reason = f"{reason} (forced; {exc.msg}; removed when the node returns)"
    async with core.db() as db:
        for kernel in kernels:
            row = await db.get(Kernel, kernel.id)
            if row is not None:
                # one the node could not remove yet is removed when the node registers again:
                # a reported container of an ended session always is
                row.status = "TERMINATED"
                logs = ended[kernel.id].logs if kernel.id in ended else None
                row.logs = logs[-MAX_KEPT_LOGS:] if logs is not None else row.logs
        current = await db.get(Session, session_id)
        assert current is not None
        event = await sessions_db.transition(
            db,
            current,
            "TERMINATED",
            reason,
            expect=("TERMINATING", "ERROR", "PREPARING", "RUNNING"),
        )
        await core.publish(db, event)


async def run_batch(core: Core, session_id: uuid.UUID) -> None:
    """A batch session runs its startup command once, ends SUCCESS/FAILURE with the reason its
    command ended, and is removed; its exit code and logs stay with the session."""
    async with core.db() as db:
        session = await db.get(Session, session_id)
        assert session is not None
        command = session.startup_command or ""
    try:
        _, exit_code, killed = await execute_collect(
            core, session, "batch", options={"exec": command}
        )
    except NodeUnavailable as exc:
        exit_code, why = None, f"the startup command was lost: {exc.msg}"
    else:
        why = batch_ending(exit_code, killed)
    async with core.db() as db:
        current = await db.get(Session, session_id)
        assert current is not None
        # ended meanwhile (destroyed by its user, lost with its node): that reason stands
        event = await sessions_db.transition(
            db, current, "TERMINATING", why, expect=("RUNNING",), exit_code=exit_code
        )
        if event is not None:
            await db.refresh(current)
            current.result = "SUCCESS" if exit_code == 0 else "FAILURE"
            current.status_data = {**current.status_data, "exit_code": exit_code, "reason": why}
        elif current.result == "UNDEFINED":
            current.result = "FAILURE"  # it did not get to finish
        await core.publish(db, event)
    if event is not None:
        with anyio.CancelScope(shield=True):
            await finish_termination(core, session_id, why, forced=True)


def batch_ending(exit_code: int | None, killed: str) -> str:
    """Why a batch session's command ended, for `status_info`."""
    if killed:
        return f"the startup command was {killed} (exit code {exit_code})"
    if exit_code == 0:
        return "the startup command succeeded (exit code 0)"
    if exit_code is not None and 128 < exit_code <= 128 + 64:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        return f"the startup command was killed by {name} (exit code {exit_code})"
    return f"the startup command failed with exit code {exit_code}"
