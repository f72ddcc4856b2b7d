"""/session routes and the WebSocket execute stream (docs/backendai-api.md §6.1-6.2)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import anyio
from quart import Blueprint, Response, jsonify, request, websocket
from sqlalchemy import select

import wire
from controlplane import lifecycle, nodecalls
from controlplane import sessions as sessions_db
from controlplane.api.app import core, read_json, requester
from controlplane.db.models import Kernel, Session
from controlplane.errors import InvalidAPIParams, SessionNotRunning
from controlplane.execution import next_chunk, open_run, send_input, start_run
from controlplane.nodecalls import NodeRefused

bp = Blueprint("session", __name__)
MAX_UPLOAD_FILES = 20
MAX_UPLOAD_SIZE = 2**20
HTTP_CHUNK_WAIT = 10.0  # an HTTP execute call returns at least this often while output is quiet


async def _find(ref: str) -> Session:
    owner_key = request.args.get("owner_access_key") or request.args.get("ownerAccessKey")
    async with core().db() as db:
        return await sessions_db.find(db, requester(), ref, owner_access_key=owner_key)


@bp.post("/session")
async def create() -> tuple[Response, int]:
    params = sessions_db.parse_create(await read_json())
    session, created = await lifecycle.create_session(core(), requester(), params)
    if not created:
        return jsonify(
            {
                "sessionId": str(session.id),
                "sessionName": session.name,
                "status": session.status,
                "service_ports": [],
                "created": False,
            }
        ), 201
    status = "PENDING"
    if not params.enqueue_only:
        status = await lifecycle.wait_started(core(), session.id, params.max_wait)
    async with core().db() as db:
        current = await db.get(Session, session.id)
        assert current is not None
    return jsonify(
        {
            "sessionId": str(session.id),
            "sessionName": session.name,
            "status": status,
            "statusInfo": current.status_info,
            "servicePorts": [],
            "created": True,
        }
    ), 201


@bp.get("/session")
async def list_sessions() -> dict[str, Any]:
    include_dead = request.args.get("all", "false").lower() in ("1", "true", "yes")
    async with core().db() as db:
        found = await sessions_db.list_for(db, requester(), include_dead=include_dead)
        return {"items": [sessions_db.to_rest_brief(s) for s in found]}


@bp.get("/session/<ref>")
async def info(ref: str) -> dict[str, Any]:
    session = await _find(ref)
    return sessions_db.to_rest(session)


@bp.delete("/session/<ref>")
async def destroy(ref: str) -> dict[str, Any]:
    session = await _find(ref)
    forced = request.args.get("forced", "false").lower() == "true"
    if session.status in ("TERMINATED", "CANCELLED"):
        return {"stats": {"status": session.status.lower()}}
    stats = await lifecycle.destroy_session(core(), session, forced=forced)
    return {"stats": stats}


@bp.get("/session/<ref>/logs")
async def logs(ref: str) -> dict[str, Any]:
    session = await _find(ref)
    async with core().db() as db:
        kernel = await db.scalar(select(Kernel).where(Kernel.session_id == session.id))
    if kernel is None or kernel.node_id is None or kernel.status == "TERMINATED":
        if kernel is not None and kernel.logs is not None:
            return {"result": {"logs": kernel.logs}}
        raise SessionNotRunning(f"Session {session.name} has no container to read logs from")
    try:
        text = await nodecalls.get_logs(core().hub, kernel.node_id, str(kernel.id))
    except NodeRefused as exc:
        raise SessionNotRunning(f"cannot read the logs: {exc.msg}") from exc
    return {"result": {"logs": text}}


@bp.post("/session/<ref>/upload")
async def upload(ref: str) -> Response:
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
    session = await _find(ref)
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


@bp.post("/session/<ref>")
async def execute(ref: str) -> dict[str, Any]:
    """The HTTP (polling) execute API: each call returns the next chunk of the run."""
    body = await read_json()
    if not isinstance(body, dict):
        raise InvalidAPIParams("the request body must be a JSON object")
    mode = body.get("mode", "query")
    session = await _find(ref)
    runs = core().http_runs
    if mode in ("query", "batch"):
        run = await start_run(core(), session, mode, body.get("code", ""), body.get("options"))
        runs.add(run)
    elif mode in ("continue", "input"):
        run = runs.get(body.get("runId"), session.id, session.access_key)
        if mode == "input":
            await send_input(core(), run, str(body.get("code", "")))
    else:
        raise InvalidAPIParams(f"unknown mode {mode!r}: use query, batch, continue or input")
    chunk = await next_chunk(run, HTTP_CHUNK_WAIT)
    if run.finished:
        runs.end(run.run_id)
    return {"result": {**chunk, "runId": run.run_id}}


@bp.websocket("/stream/session/<ref>/execute")
async def execute_stream(ref: str) -> None:
    owner_key = websocket.args.get("owner_access_key")
    async with core().db() as db:
        session = await sessions_db.find(db, requester(), ref, owner_access_key=owner_key)
    await websocket.accept()
    try:
        first = json.loads(await websocket.receive())
        if not isinstance(first, dict):
            raise InvalidAPIParams("the first frame must be a JSON object")
        async with open_run(
            core(),
            session,
            first.get("mode", "query"),
            first.get("code", ""),
            first.get("options"),
        ) as run:
            while True:
                chunk = await next_chunk(run)
                await websocket.send(json.dumps(chunk))
                if chunk["status"] == "finished":
                    break
                if chunk["status"] == "waiting-input":
                    answer = await websocket.receive()
                    text = answer if isinstance(answer, str) else answer.decode()
                    await send_input(core(), run, text)
    except (ValueError, InvalidAPIParams, SessionNotRunning) as exc:
        message = exc.msg if isinstance(exc, InvalidAPIParams | SessionNotRunning) else str(exc)
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
