"""/session routes and the WebSocket execute stream (docs/backendai-api.md §6.1-6.2)."""

from __future__ import annotations

import base64
import json
import urllib.parse

import anyio
from quart import Blueprint, Response, request, websocket
from sqlalchemy import select

import wire
from controlplane import apps, lifecycle, nodecalls
from controlplane import sessions as sessions_db
from controlplane.api._context import core, requester
from controlplane.api._session_models import (
    CreateSession,
    Destroyed,
    DestroyQuery,
    Executed,
    ExecuteRequest,
    ExecuteResult,
    ListQuery,
    Logs,
    LogsResult,
    OwnerQuery,
    ServicePortView,
    SessionBrief,
    SessionCreated,
    SessionInfo,
    SessionList,
    SessionReused,
    UploadForm,
)
from controlplane.api._typed import (
    body,
    documented,
    parse_json,
    query,
    read_query,
    returns,
    validate,
)
from controlplane.db.models import Kernel, Session
from controlplane.errors import InvalidAPIParams, SessionNotFound, SessionNotRunning
from controlplane.execution import next_chunk, open_run, send_input, start_run
from controlplane.nodecalls import NodeRefused

bp = Blueprint("session", __name__)
MAX_UPLOAD_FILES = 20
MAX_UPLOAD_SIZE = 2**20
HTTP_CHUNK_WAIT = 10.0  # an HTTP execute call returns at least this often while output is quiet


async def _find(ref: str, owner_access_key: str | None) -> Session:
    async with core().db() as db:
        return await sessions_db.find(db, requester(), ref, owner_access_key=owner_access_key)


@bp.post("/session")
@returns(SessionCreated | SessionReused, 201)
@body(CreateSession)
async def create(data: CreateSession) -> SessionCreated | SessionReused:
    """Create a session (or reuse the active one of that name) and wait until it runs."""
    params = data.params()
    # subscribed before the session exists: its start is told by its events, none missed, and
    # nothing needs reading again
    async with core().events.subscribe() as events:
        session, created = await lifecycle.create_session(core(), requester(), params)
        if not created:
            return SessionReused(
                session_id=str(session.id), session_name=session.name, status=session.status
            )
        status, status_info, node_id = "PENDING", session.status_info, None
        if not params.enqueue_only:
            status, status_info, node_id = await lifecycle.wait_started(
                events, session, params.max_wait
            )
    service_ports = []
    if status == "RUNNING" and node_id is not None:
        async with core().db() as db:
            labels = await core().lookups.image_labels(db, node_id, session.image)
        service_ports = apps.of_started(labels)
    return SessionCreated(
        session_id=str(session.id),
        session_name=session.name,
        status=status,
        status_info=status_info,
        service_ports=[ServicePortView.of(app) for app in service_ports],
    )


@bp.get("/session")
@returns(SessionList)
@query(ListQuery)
async def list_sessions(args: ListQuery) -> SessionList:
    """The caller's sessions (active ones unless all=true)."""
    async with core().db() as db:
        found = await sessions_db.list_for(db, requester(), include_dead=args.all)
        return SessionList(items=[SessionBrief.of(s) for s in found])


@bp.get("/session/<ref>")
@returns(SessionInfo)
@query(OwnerQuery)
async def info(ref: str, args: OwnerQuery) -> SessionInfo:
    """One session by id or name, with its status history."""
    session = await _find(ref, args.owner_access_key)
    async with core().db() as db:
        architecture = (await sessions_db.architectures(db, [session]))[session.id]
        service_ports = await apps.of_session(db, session)
    return SessionInfo.of(session, architecture, service_ports)


@bp.delete("/session/<ref>")
@returns(Destroyed)
@query(DestroyQuery)
async def destroy(ref: str, args: DestroyQuery) -> Destroyed:
    """End a session and remove its container."""
    async with core().db() as db:
        session = await sessions_db.find(
            db, requester(), ref, owner_access_key=args.owner_access_key, row_only=True
        )
    if session.status in ("TERMINATED", "CANCELLED"):
        # as the 23.09 manager: an ended session is not found for a destroy (ERROR ones are,
        # and their containers removed)
        raise SessionNotFound(f"Session (id={ref}) does not exist.")
    stats = await lifecycle.destroy_session(core(), session, forced=args.forced)
    return Destroyed(stats=stats)


@bp.get("/session/<ref>/logs")
@returns(Logs)
@query(OwnerQuery)
async def logs(ref: str, args: OwnerQuery) -> Logs:
    """The container's output so far (kept after it is gone)."""
    session = await _find(ref, args.owner_access_key)
    async with core().db() as db:
        kernel = await db.scalar(select(Kernel).where(Kernel.session_id == session.id))
    if kernel is None or kernel.node_id is None or kernel.status == "TERMINATED":
        if kernel is not None and kernel.logs is not None:
            return Logs(result=LogsResult(logs=kernel.logs))
        raise SessionNotRunning(f"Session {session.name} has no container to read logs from")
    try:
        text = await nodecalls.get_logs(core().hub, kernel.node_id, str(kernel.id))
    except NodeRefused as exc:
        raise SessionNotRunning(f"cannot read the logs: {exc.msg}") from exc
    return Logs(result=LogsResult(logs=text))


@bp.post("/session/<ref>/upload")
@documented({204: None}, multipart=UploadForm)
@query(OwnerQuery)
async def upload(ref: str, args: OwnerQuery) -> Response:
    """Put files into the session's working directory (multipart parts named src)."""
    session = await _find(ref, args.owner_access_key)  # someone else's session: 404 first
    files = (await request.files).getlist("src")
    if not files:
        raise InvalidAPIParams("send the files as multipart parts named 'src'")
    if len(files) > MAX_UPLOAD_FILES:
        raise InvalidAPIParams(f"at most {MAX_UPLOAD_FILES} files per upload")
    payload = []
    for storage in files:
        data = storage.read()
        if len(data) >= MAX_UPLOAD_SIZE:
            raise InvalidAPIParams(f"{storage.filename}: each file must be under 1 MiB")
        # aiohttp (the official client) percent-encodes the file name: "sub%2Fa.py"
        path = urllib.parse.unquote(storage.filename or "")
        if not path or path.startswith("/") or ".." in path.split("/"):
            raise InvalidAPIParams(f"{path!r}: file names must be relative paths without '..'")
        payload.append(wire.UploadFile(path=path, data_b64=base64.b64encode(data).decode()))
    async with core().db() as db:
        kernel = await db.scalar(
            select(Kernel).where(Kernel.session_id == session.id, Kernel.status == "RUNNING")
        )
    if session.status != "RUNNING" or kernel is None or kernel.node_id is None:
        raise SessionNotRunning(f"Session {session.name} is {session.status}")
    try:
        await nodecalls.upload(core().hub, kernel.node_id, str(kernel.id), payload)
    except NodeRefused as exc:
        raise InvalidAPIParams(exc.msg) from exc
    return Response(status=204)


# --- execution ---------------------------------------------------------------------------------


async def _find_for_run(ref: str, owner_access_key: str | None) -> Session:
    """As `_find`, from memory while nothing changed (controlplane/sessionrefs.py): runs of
    code come often. The session's history is not loaded."""
    return await core().session_refs.find(
        core().db, requester(), ref, owner_access_key=owner_access_key
    )


@bp.post("/session/<ref>")
@returns(Executed)
@query(OwnerQuery)
@body(ExecuteRequest)
async def execute(ref: str, args: OwnerQuery, data: ExecuteRequest) -> Executed:
    """The HTTP (polling) execute API: each call returns the next chunk of the run."""
    session = await _find_for_run(ref, args.owner_access_key)
    runs = core().http_runs
    if data.mode in ("query", "batch"):
        if data.run_id is not None:  # checked before the code reaches the kernel
            runs.check_free(session.id, data.run_id)
        run = await start_run(
            core(), session, data.mode, data.code, data.options, data.run_id, current=True
        )
        try:
            runs.add(run)
        except InvalidAPIParams:  # another request started a run of that id meanwhile
            core().hub.close_run(run.run_id)
            raise
    else:  # continue or input
        run = runs.get(data.run_id, session.id, session.access_key)
        if data.mode == "input":
            await send_input(core(), run, data.code)
    chunk = await next_chunk(run, HTTP_CHUNK_WAIT)
    if run.finished:
        runs.end(run)
    return Executed(result=ExecuteResult.model_validate({**chunk, "runId": run.client_run_id}))


@bp.websocket("/stream/session/<ref>/execute")
async def execute_stream(ref: str) -> None:
    """Run code and stream its output: the first text frame is an ExecuteRequest (query or
    batch), then one ExecuteResult-shaped frame per chunk; raw text frames answer prompts."""
    owner_key = read_query(OwnerQuery).owner_access_key
    session = await _find_for_run(ref, owner_key)
    await websocket.accept()
    try:
        first = validate(ExecuteRequest, parse_json(await websocket.receive()))
        if first.mode not in ("query", "batch"):
            raise InvalidAPIParams("the first frame starts a run: mode must be query or batch")
        async with open_run(core(), session, first.mode, first.code, first.options) as run:
            while True:
                chunk = await next_chunk(run)
                await websocket.send(json.dumps(chunk))
                if chunk["status"] == "finished":
                    break
                if chunk["status"] == "waiting-input":
                    answer = await websocket.receive()
                    text = answer if isinstance(answer, str) else answer.decode()
                    await send_input(core(), run, text)
    except (InvalidAPIParams, SessionNotRunning) as exc:
        message = exc.msg if exc.data is None else f"{exc.msg}: {json.dumps(exc.data)}"
        await websocket.send(json.dumps({"status": "error", "msg": message}))
        await websocket.send(
            json.dumps(
                {
                    "status": "finished",
                    "console": [["stderr", f"shipyard: {message}\n"]],
                    "exitCode": 1,
                    "options": {},
                    "files": [],
                }
            )
        )
    with anyio.move_on_after(5):
        await websocket.close(1000)
