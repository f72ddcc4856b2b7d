"""A scripted stand-in for the control plane's client API, for the SDK and CLI tests.

It is a real HTTP + WebSocket server (Quart on Hypercorn, in a thread with its own asyncio
loop, so that code under test can run its own trio loop and click's CliRunner can call it
synchronously). Like the real control plane it verifies every signature against the raw
request target, the Host header and the Content-Type, and answers errors as problem+json.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import hypercorn.asyncio
import hypercorn.config
from quart import Quart, Response, request, websocket

import wire

ACCESS_KEY = "AKIATESTFAKE0000000"
SECRET_KEY = "fake/secret+key"
PROBS = "https://api.backend.ai/probs/"


@dataclass
class Recorded:
    method: str
    target: str  # raw path + query, as received
    headers: dict[str, str]
    body: bytes = b""
    files: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # field, name, type


def problem(status: int, slug: str, title: str, msg: str = "", data: Any = None) -> Response:
    body: dict[str, Any] = {"type": PROBS + slug, "title": title}
    if msg:
        body["msg"] = msg
    if data is not None:
        body["data"] = data
    return Response(json.dumps(body), status=status, content_type="application/problem+json")


def _target(scope: dict[str, Any]) -> str:
    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _signature_problem(method: str, scope: dict[str, Any], headers: Any) -> Response | None:
    auth = headers.get("Authorization")
    if not auth:
        return problem(401, "auth-failed", "Credential/signature mismatch.", "Unauthorized")
    parsed = wire.parse_authorization(auth)
    content_type = headers.get("Content-Type", "application/octet-stream").split(";")[0]
    expected = wire.sign(
        method=method,
        rel_url=_target(scope),
        date=headers["Date"],
        host=headers["Host"],
        content_type=content_type.strip().lower(),
        version=headers["X-BackendAI-Version"],
        secret_key=SECRET_KEY,
    )
    if parsed.access_key != ACCESS_KEY or parsed.signature != expected:
        return problem(401, "auth-failed", "Credential/signature mismatch.", "Signature mismatch")
    return None


class FakeAPI:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.sessions: dict[str, dict[str, Any]] = {}  # by id
        self.create_status = "RUNNING"
        self.create_status_info = ""
        self.errors: dict[tuple[str, str], Response] = {}  # (method, path) -> answer
        # frames the execute stream sends, in order; waiting-input makes it read an answer
        self.frames: list[dict[str, Any]] = [
            {"status": "finished", "console": [["stdout", "hi\n"]], "exitCode": 0}
        ]
        self.first_frames: list[dict[str, Any]] = []
        self.inputs: list[str] = []
        self.port = 0
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "SHIPYARD_ENDPOINT": self.endpoint,
            "SHIPYARD_ACCESS_KEY": ACCESS_KEY,
            "SHIPYARD_SECRET_KEY": SECRET_KEY,
        }

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.target) for r in self.requests]

    def find(self, ref: str) -> dict[str, Any] | None:
        for s in self.sessions.values():
            if ref in (s["sessionId"], s["sessionName"]):
                return s
        return None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        listening = os.dup(sock.fileno())
        sock.close()
        ready = threading.Event()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            config = hypercorn.config.Config()
            config.bind = [f"fd://{listening}"]  # hypercorn owns (and closes) this one
            config.errorlog = None
            ready.set()
            await hypercorn.asyncio.serve(build_app(self), config, shutdown_trigger=self._stop.wait)

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)


def build_app(fake: FakeAPI) -> Quart:
    app = Quart("fake-controlplane")

    @app.before_request
    async def record_and_check() -> Response | None:
        scope = dict(request.scope)
        body = await request.get_data()
        recorded = Recorded(request.method, _target(scope), dict(request.headers), body)
        if request.mimetype == "multipart/form-data":
            files = await request.files
            for name, storage in files.items(multi=True):
                recorded.files.append(
                    (name, storage.filename or "", storage.content_type or "", storage.read())
                )
        fake.requests.append(recorded)
        if request.path == "/health":
            return None
        rejection = _signature_problem(request.method, scope, request.headers)
        if rejection is not None:
            return rejection
        return fake.errors.get((request.method, request.path))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "nodesAlive": 1}

    @app.post("/session")
    async def create() -> tuple[dict[str, Any], int]:
        params = json.loads(await request.get_data())
        sid = str(uuid.uuid4())
        fake.sessions[sid] = {
            "sessionId": sid,
            "sessionName": params["name"],
            "status": fake.create_status,
            "statusInfo": fake.create_status_info,
            "image": params["image"],
            "creationTime": "2026-11-22T04:00:00+00:00",
            "statusHistory": [{"status": "PENDING", "reason": "enqueued", "at": "t0"}],
        }
        answer = {"sessionId": sid, "sessionName": params["name"], "status": fake.create_status}
        return {**answer, "servicePorts": [], "created": True}, 201

    @app.get("/events/session")
    async def events() -> Response:
        async def stream() -> Any:
            yield b": listening\n\n"
            await asyncio.Event().wait()  # until the client goes away

        response = Response(stream(), content_type="text/event-stream")
        response.timeout = None
        return response

    @app.get("/session")
    async def ls() -> dict[str, Any]:
        everything = request.args.get("all") == "true"
        items = [s for s in fake.sessions.values() if everything or s["status"] == "RUNNING"]
        return {"items": items}

    def missing(ref: str) -> Response:
        return problem(
            404, "object-not-found", "No such session.", f"Session (id={ref}) does not exist."
        )

    @app.get("/session/<ref>")
    async def info(ref: str) -> Any:
        return fake.find(ref) or missing(ref)

    @app.delete("/session/<ref>")
    async def destroy(ref: str) -> Any:
        found = fake.find(ref)
        if found is None:
            return missing(ref)
        found["status"] = "TERMINATED"
        return {"stats": {"status": "terminated"}}

    @app.get("/session/<ref>/logs")
    async def logs(ref: str) -> Any:
        return {"result": {"logs": "container says hello\n"}} if fake.find(ref) else missing(ref)

    @app.post("/session/<ref>/upload")
    async def upload(ref: str) -> Any:
        return Response(status=204) if fake.find(ref) else missing(ref)

    @app.before_websocket
    async def check_websocket() -> Response | None:
        scope = dict(websocket.scope)
        fake.requests.append(Recorded("WS", _target(scope), dict(websocket.headers)))
        return _signature_problem("GET", scope, websocket.headers)

    @app.websocket("/stream/session/<ref>/execute")
    async def execute(ref: str) -> None:
        await websocket.accept()
        fake.first_frames.append(json.loads(await websocket.receive()))
        for frame in fake.frames:
            await websocket.send(json.dumps(frame))
            if frame.get("status") == "waiting-input":
                fake.inputs.append(await websocket.receive())
        await websocket.close(1000)

    @app.get("/admin/keypairs")
    async def keypairs() -> dict[str, Any]:
        item = {"accessKey": ACCESS_KEY, "userEmail": "admin@local", "isActive": True}
        return {"items": [{**item, "isAdmin": True, "createdAt": "t0"}]}

    @app.post("/admin/keypairs")
    async def create_keypair() -> tuple[dict[str, Any], int]:
        body = json.loads(await request.get_data())
        answer = {"accessKey": "AKNEW", "secretKey": "SKNEW", "userEmail": body["user"]}
        return {**answer, "isAdmin": body["isAdmin"]}, 201

    @app.delete("/admin/keypairs/<ak>")
    async def delete_keypair(ak: str) -> dict[str, Any]:
        return {}

    @app.get("/images")
    async def images() -> dict[str, Any]:
        item = {"name": "shipyard/python:3.11", "digest": "sha256:0123456789abcdef0000"}
        more = {"sizeBytes": 117_000_000, "architecture": "x86_64", "source": "recipe"}
        labels = {"ai.shipyard.kernel": "1", "ai.shipyard.batch.exec": "python main.py"}
        more |= {"labels": labels, "aliases": ["python"], "nodes": ["i-a"]}
        return {"items": [{**item, **more}]}

    @app.post("/images")
    async def register_image() -> tuple[dict[str, Any], int]:
        name = json.loads(await request.get_data())["name"]
        return {"name": name, "source": "admin", "nodes": ["i-a", "i-b"]}, 201

    @app.delete("/images/<path:name>")
    async def forget_image(name: str) -> dict[str, Any]:
        return {"name": name, "forgotten": True}

    @app.post("/images/aliases")
    async def alias() -> tuple[dict[str, Any], int]:
        return json.loads(await request.get_data()), 201

    @app.delete("/images/aliases/<alias>")
    async def dealias(alias: str) -> dict[str, Any]:
        return {}

    return app
