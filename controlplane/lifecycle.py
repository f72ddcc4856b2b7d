"""What happens to sessions the users ask for: creation, starting their kernels once the
scheduler placed them, waiting for the start, destruction and batch runs.

What nodes report (registration, kernel exits, lost nodes) is `controlplane.reconcile`.
"""

from __future__ import annotations

import math
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sqlalchemy import select, update

import wire
from controlplane import keypairs, nodecalls, pipelines, scalinggroups, vfolders
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
        image = await core.lookups.image(db, params.image)
        existing = await sessions_db.find_active_by_name(db, owner.access_key, params.name)
        if existing is not None:
            if params.reuse and existing.image == image:
                return existing, False
            raise SessionAlreadyExists(
                f"A session named {params.name!r} is already active.",
                data={"existingSessionId": str(existing.id)},
            )
        connected = (facts.slots for facts in core.hub.placeable().values())
        await sessions_db.check_satisfiable(db, params.resources, connected)
        dependencies = await pipelines.resolve_dependencies(db, owner, params.dependencies)
        starts_at = None
        if params.starts_at is not None:
            try:
                starts_at = pipelines.parse_starts_at(params.starts_at, core.activity.clock.now())
            except ValueError as exc:
                raise InvalidAPIParams(str(exc)) from exc
        project = await core.lookups.project(db, owner.user, params.domain, params.group)
        scaling_group = scalinggroups.choose(
            await core.lookups.allowed_groups(db, project),
            project,
            params.scaling_group,
            params.type,
        )
        session = Session(
            id=uuid.uuid4(),  # known before the insert: the rows below refer to it
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
        await vfolders.mounts.attach(db, core.vfolder_hosts, session, owner.user, params.mounts)
        db.add_all(SessionDependency(session_id=session.id, depends_on=d) for d in dependencies)
        db.add(StatusChange(session_id=session.id, status="PENDING", reason="enqueued"))
        event = SessionEvent(session.id, session.name, session.access_key, "PENDING", "enqueued")
        await core.publish(db, event)
        return session, True


async def wait_started(
    events: AsyncIterator[SessionEvent], session: Session, max_wait: float
) -> tuple[str, str, str | None]:
    """(status, status_info, node id once placed) once the new `session` left the starting
    states, from the events of a subscription made before it was created (so none is missed
    and nothing is read again); ("TIMEOUT", why it still waits, node) if max_wait (>0) runs
    out."""
    reason, node_id = session.status_info, None
    with anyio.move_on_after(max_wait if max_wait > 0 else math.inf):
        async for event in events:
            if event.session_id == session.id:
                reason, node_id = event.reason, event.node_id or node_id
                if event.status in STARTED:
                    return event.status, reason, node_id
    return "TIMEOUT", reason, node_id


def start_placed(core: Core, session_id: uuid.UUID) -> None:
    """The scheduler placed the session on a node: start its kernel in the background."""
    core.spawn(start_kernel, core, session_id, session_id=session_id)


async def start_kernel(core: Core, session_id: uuid.UUID) -> None:
    """SCHEDULED -> PREPARING -> RUNNING (or ERROR with the node's reason).

    Two transactions: PREPARING with the kernel row before the node is asked (what a restart
    finds, reconcile.py), then its outcome, written without reading anything again."""
    async with core.db() as db:
        session = await db.get(Session, session_id, options=sessions_db.ROW_ONLY)
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
        kernel_id = uuid.uuid4()
        db.add(Kernel(id=kernel_id, session_id=session.id, node_id=node_id, status="PREPARING"))
        request = wire.CreateKernel(
            req_id="",
            kernel_id=str(kernel_id),
            session_id=str(session.id),
            owner_access_key=session.access_key,
            image=session.image,
            slots=session.requested_slots,
            environ=session.environ,
            mounts=await vfolders.mounts.for_kernel(db, core.vfolder_hosts, session.id),
        )
        await core.publish(db, event)
    container_id: str | None = None
    disconnected = False
    try:
        container_id, failure = await nodecalls.create_kernel(core.hub, node_id, request), ""
    except NodeUnavailable as exc:
        if core.is_stopping:  # our own links are closing: it is settled after the restart
            return
        disconnected, failure = isinstance(exc, NodeDisconnected), exc.msg
    kernel = update(Kernel).where(Kernel.id == kernel_id)
    async with core.db() as db:
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
                await db.execute(kernel.values(status="ERROR"))
            await core.publish(db, event)
            return
        event = await sessions_db.transition(
            db,
            session,
            "RUNNING",
            f"container {container_id[:12]} on {node_id}",
            expect=("PREPARING",),
        )
        ran = {"status": "RUNNING"} if event is not None else {}
        await db.execute(kernel.values(container_id=container_id, **ran))
        await core.publish(db, event)
    if event is None:
        # destroyed while it was starting: the container must not outlive the session
        await nodecalls.destroy_kernel(core.hub, node_id, str(kernel_id))
        return
    if session.type == "BATCH":
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
        kernels = list(
            await db.execute(
                select(Kernel.id, Kernel.node_id, Kernel.status).where(
                    Kernel.session_id == session_id
                )
            )
        )
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
            # one the node could not remove yet is removed when the node registers again: a
            # reported container of an ended session always is
            values: dict[str, Any] = {"status": "TERMINATED"}
            logs = ended[kernel.id].logs if kernel.id in ended else None
            if logs is not None:
                values["logs"] = logs[-MAX_KEPT_LOGS:]
            await db.execute(update(Kernel).where(Kernel.id == kernel.id).values(values))
        current = await db.get(Session, session_id, options=sessions_db.ROW_ONLY)
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
