"""What happens to sessions: creation, waiting for start, destruction, batch runs, and keeping
the records true to what the nodes report (registration, kernel exits, lost nodes)."""

from __future__ import annotations

import contextlib
import math
import uuid
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select

import wire
from controlplane import images as images_db
from controlplane import keypairs
from controlplane import sessions as sessions_db
from controlplane.db.models import (
    ACTIVE_STATUSES,
    Kernel,
    Keypair,
    Node,
    Session,
    StatusChange,
)
from controlplane.db.types import utcnow
from controlplane.errors import NodeUnavailable, SessionAlreadyExists
from controlplane.events import SessionEvent
from controlplane.execution import execute_collect

if TYPE_CHECKING:
    from controlplane.core import Core

DESTROY_TIMEOUT = 60.0
MAX_KEPT_LOGS = 256 * 1024
STARTED = ("RUNNING", "ERROR", "TERMINATING", "TERMINATED", "CANCELLED")


async def create_session(
    core: Core, requester: Keypair, params: sessions_db.CreateParams
) -> tuple[Session, bool]:
    """Validate and enqueue; returns (session, created). Nothing is written on a bad request."""
    async with core.db() as db:
        owner = requester
        if params.owner_access_key and params.owner_access_key != requester.access_key:
            from controlplane.errors import InsufficientPrivilege, InvalidAPIParams

            if not requester.is_admin:
                raise InsufficientPrivilege("only admins may create sessions for another keypair")
            other = await keypairs.get_active(db, params.owner_access_key)
            if other is None:
                raise InvalidAPIParams(f"no active keypair {params.owner_access_key}")
            owner = other
        image = await images_db.resolve(db, params.image)
        existing = await sessions_db.find_active_by_name(db, owner.access_key, params.name)
        if existing is not None:
            if params.reuse and existing.image == image:
                return existing, False
            raise SessionAlreadyExists(
                f"A session named {params.name!r} is already active.",
                data={"existingSessionId": str(existing.id)},
            )
        await sessions_db.check_satisfiable(db, params.resources)
        project = await keypairs.default_project_id(db)
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
            environ=params.environ,
            startup_command=params.startup_command,
        )
        db.add(session)
        await db.flush()
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


async def destroy_kernel(core: Core, node_id: str, kernel_id: uuid.UUID) -> int | None:
    conn = core.hub.get(node_id)
    reply = await conn.request(
        lambda req_id: wire.DestroyKernel(req_id=req_id, kernel_id=str(kernel_id)),
        wait=DESTROY_TIMEOUT,
    )
    if not reply.ok:
        raise NodeUnavailable(f"node {node_id} could not remove the container: {reply.error}")
    code = reply.result.get("exit_code")
    return code if isinstance(code, int) else None


async def _last_logs(core: Core, node_id: str, kernel_id: uuid.UUID) -> str | None:
    """The container's output, kept so `session logs` works after it is gone."""
    reply = await core.hub.get(node_id).request(
        lambda req_id: wire.GetLogs(req_id=req_id, kernel_id=str(kernel_id)), wait=10
    )
    logs = reply.result.get("logs") if reply.ok else None
    return logs[-MAX_KEPT_LOGS:] if isinstance(logs, str) else None


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
        kernels = list(await db.scalars(select(Kernel).where(Kernel.session_id == session.id)))
    # shielded: once asked, the container goes even if the client hangs up
    with anyio.CancelScope(shield=True):
        reason = "terminated by the user"
        logs: dict[uuid.UUID, str | None] = {}
        for kernel in kernels:
            if kernel.node_id is None:  # an exited container is still removed
                continue
            try:
                logs[kernel.id] = await _last_logs(core, kernel.node_id, kernel.id)
                await destroy_kernel(core, kernel.node_id, kernel.id)
            except NodeUnavailable as exc:
                if not forced:
                    raise
                reason = f"terminated by the user (forced; {exc}; removed when the node returns)"
        async with core.db() as db:
            for kernel in kernels:
                row = await db.get(Kernel, kernel.id)
                if row is not None:
                    row.status = "TERMINATED"
                    row.logs = logs.get(kernel.id) or row.logs
            current = await db.get(Session, session.id)
            assert current is not None
            event = await sessions_db.transition(
                db,
                current,
                "TERMINATED",
                reason,
                expect=("TERMINATING", "ERROR", "PREPARING", "RUNNING"),
            )
            await core.publish(db, event)
    return {"status": "terminated"}


async def run_batch(core: Core, session_id: uuid.UUID) -> None:
    """A batch session runs its startup command once, ends SUCCESS/FAILURE, and is removed."""
    async with core.db() as db:
        session = await db.get(Session, session_id)
        assert session is not None
        command = session.startup_command or ""
    try:
        _, exit_code = await execute_collect(core, session, "batch", options={"exec": command})
    except NodeUnavailable as exc:
        exit_code, why = None, str(exc)
    else:
        why = f"startup command exited with code {exit_code}"
    async with core.db() as db:
        current = await db.get(Session, session_id)
        assert current is not None
        current.result = "SUCCESS" if exit_code == 0 else "FAILURE"
        current.status_data = {**current.status_data, "exit_code": exit_code, "reason": why}
        await db.commit()
    await destroy_session(core, current, forced=True)


# --- what nodes tell us ------------------------------------------------------------------------


async def on_register(core: Core, message: wire.Register) -> None:
    """Record the node and reconcile our session records with the kernels it really has."""
    now = utcnow()
    to_destroy: list[str] = []
    events = []
    async with core.db() as db:
        node = await db.get(Node, message.node_id)
        if node is None:
            node = Node(id=message.node_id, first_contact=now)
            db.add(node)
        node.status = "ALIVE"
        node.architecture = message.architecture
        node.network_mode = message.network_mode
        node.version = message.version
        node.available_slots = message.slots
        node.accelerators = {"devices": message.accelerators}
        node.last_contact = now
        await db.flush()
        await images_db.sync_node_images(db, message.node_id, message.images)

        reported = {k.kernel_id: k for k in message.kernels}
        kernels = list(await db.scalars(select(Kernel).where(Kernel.node_id == message.node_id)))
        known = {str(k.id) for k in kernels}
        for kernel in kernels:
            session = await db.get(Session, kernel.session_id)
            assert session is not None
            info = reported.get(str(kernel.id))
            active = session.status in ACTIVE_STATUSES
            if info is None:
                if active and session.status != "PENDING":
                    kernel.status = "TERMINATED"
                    events.append(
                        await sessions_db.transition(
                            db,
                            session,
                            "ERROR",
                            "the container vanished while the node was away",
                            expect=ACTIVE_STATUSES,
                        )
                    )
                continue
            if not active:
                to_destroy.append(info.kernel_id)  # a leftover of a session that ended
            elif not info.running:
                kernel.status = "TERMINATED"
                kernel.exit_code = info.exit_code
                why = _exit_reason(info.exit_code, info.oom_killed, session)
                events.append(
                    await sessions_db.transition(
                        db,
                        session,
                        "ERROR",
                        why,
                        expect=ACTIVE_STATUSES,
                        exit_code=info.exit_code,
                        status_data={"exit_code": info.exit_code, "oom_killed": info.oom_killed},
                    )
                )
            elif session.status in ("PENDING", "SCHEDULED", "PREPARING"):
                # created before a control plane restart: adopt it
                kernel.status = "RUNNING"
                kernel.container_id = info.container_id
                events.append(
                    await sessions_db.transition(
                        db,
                        session,
                        "RUNNING",
                        f"adopted container on {message.node_id}",
                        expect=("PENDING", "SCHEDULED", "PREPARING"),
                        node_id=message.node_id,
                    )
                )
        for kernel_id in reported:
            if kernel_id not in known:
                to_destroy.append(kernel_id)  # not ours any more (or never recorded)
        await core.publish(db, *events)
    core.scheduler.wake()
    for kernel_id in to_destroy:
        core.spawn(_destroy_quietly, core, message.node_id, kernel_id)


async def _destroy_quietly(core: Core, node_id: str, kernel_id: str) -> None:
    # on failure it is tried again when the node registers next time
    with contextlib.suppress(NodeUnavailable, ValueError):
        await destroy_kernel(core, node_id, uuid.UUID(kernel_id))


def _exit_reason(exit_code: int | None, oom_killed: bool, session: Session) -> str:
    if oom_killed:
        mem = wire.Slots.from_wire(session.requested_slots)["mem"]
        return f"killed: out of memory (memory limit {wire.format_bytes(mem)})"
    return f"the container exited with code {exit_code}"


async def on_kernel_exited(core: Core, node_id: str, message: wire.KernelExited) -> None:
    async with core.db() as db:
        try:
            kernel = await db.get(Kernel, uuid.UUID(message.kernel_id))
        except ValueError:
            return
        if kernel is None:
            return
        kernel.status = "TERMINATED"
        kernel.exit_code = message.exit_code
        session = await db.get(Session, kernel.session_id)
        assert session is not None
        reason = _exit_reason(message.exit_code, message.oom_killed, session)
        event = await sessions_db.transition(
            db,
            session,
            "ERROR",
            reason,
            expect=("PREPARING", "RUNNING"),
            exit_code=message.exit_code,
            status_data={"exit_code": message.exit_code, "oom_killed": message.oom_killed},
        )
        await core.publish(db, event)


async def on_heartbeat(core: Core, node_id: str, message: wire.Heartbeat) -> None:
    async with core.db() as db:
        node = await db.get(Node, node_id)
        if node is not None:
            node.cpu_cur_pct = message.cpu_pct
            node.mem_cur_bytes = message.mem_used_bytes
            node.last_contact = utcnow()
            await db.commit()


async def on_images_changed(core: Core, node_id: str, message: wire.ImagesChanged) -> None:
    async with core.db() as db:
        await images_db.sync_node_images(db, node_id, message.images)
        await db.commit()
    core.scheduler.wake()


async def on_node_lost(core: Core, node_id: str) -> None:
    async with core.db() as db:
        node = await db.get(Node, node_id)
        if node is not None:
            node.status = "LOST"
            node.last_contact = utcnow()
            await db.commit()
