"""The Python SDK: one signed HTTP client for the control plane's REST API (httpx on trio).

Requests are signed exactly as backend.ai-client 23.9.10 signs them (docs/backendai-api.md
§2.2, §3), so a server that accepts one accepts the other.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import trio

from client.config import ClientConfig
from client.errors import APIError, ClientError, ConnectFailed

if TYPE_CHECKING:
    import trio_websocket

    from client._stream import InputHandler
from wire import API_VERSION, authorization_header, sign

USER_AGENT = "Shipyard Client for Python"
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _segment(ref: str) -> str:
    """A session name, id or alias as one path segment ("/" and "?" cannot escape it)."""
    return quote(ref, safe="")


def signing_host(endpoint: str) -> str:
    """`host[:port]` exactly as configured, host lower-cased (what the reference client signs)."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


def signed_headers(
    config: ClientConfig, method: str, rel_url: str, content_type: str, date: datetime
) -> dict[str, str]:
    """Date, version and Authorization headers for one request.

    `rel_url` is the request target as sent (path plus query, with any endpoint prefix);
    `content_type` is the client's own idea of it (no parameters), see §3.1.
    """
    date_text = date.astimezone(UTC).isoformat()
    signature = sign(
        method=method,
        rel_url=rel_url,
        date=date_text,
        host=signing_host(config.endpoint),
        content_type=content_type,
        version=API_VERSION,
        secret_key=config.secret_key,
    )
    return {
        "Date": date_text,
        "X-BackendAI-Version": API_VERSION,
        "Authorization": authorization_header(config.access_key, signature),
    }


def _root_cause(exc: BaseException) -> str:
    """The most specific reason in a chain of connection errors, e.g. "Connection refused"
    rather than trio's "all attempts to connect to 127.0.0.1:1 failed"."""
    reason = str(exc) or type(exc).__name__
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup):
            current = current.exceptions[0]
            continue
        if isinstance(current, OSError) and current.strerror:
            reason = current.strerror
        current = current.__cause__ or current.__context__
    return reason


def architecture() -> str:
    machine = os.uname().machine.lower()
    return _ARCH_ALIASES.get(machine, machine)


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) for each server-sent event; comments and fields without data skipped."""
    name, data = "", ""
    async for line in lines:
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif not line and name:
            try:
                yield name, json.loads(data or "null")
            except ValueError as exc:
                raise ClientError(f"the control plane sent a malformed {name} event") from exc
            name, data = "", ""


def mount_config(
    specs: Sequence[str],
) -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """`config.mounts`, `mount_map` and `mount_options` of NAME[:PATH][:ro] mount specs."""
    names: list[str] = []
    paths: dict[str, str] = {}
    options: dict[str, dict[str, str]] = {}
    for spec in specs:
        parts = spec.split(":")
        mode = parts.pop() if len(parts) > 1 and parts[-1] in ("ro", "rw") else "rw"
        if mode == "ro":
            options[parts[0]] = {"permission": "ro"}
        if not parts[0] or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
            raise ClientError(f"--mount {spec!r}: expected NAME[:PATH][:ro]")
        names.append(parts[0])
        if len(parts) == 2:
            paths[parts[0]] = parts[1]
    return names, paths, options


class Client:
    """`async with Client(ClientConfig.from_env()) as api: await api.list_sessions()`."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.config = config
        self._clock = clock
        parts = urlsplit(config.endpoint)
        self._base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        if transport is None and parts.scheme == "http":
            # Plain HTTP never uses TLS: skip building a verifying SSL context (loading the CA
            # bundle costs ~20 ms of every `shipyard run`).
            transport = httpx.AsyncHTTPTransport(verify=False)
        # No read timeout: POST /session is held until the session runs (§6.1).
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(None, connect=10.0),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._http.aclose()

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        url = self._base + path
        if query:
            # like yarl: "*" and "," stay as they are, spaces become "+"
            url += "?" + urlencode(query, safe="*,")
        return url

    @property
    def transfers(self) -> httpx.AsyncClient:
        """For the unsigned requests to the URLs `request-upload`/`-download` hand out."""
        return self._http

    def headers_for(self, method: str, rel_url: str, content_type: str) -> dict[str, str]:
        return signed_headers(self.config, method, rel_url, content_type, self._clock())

    # --- transport -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        files: Sequence[tuple[str, tuple[str, bytes, str]]] | None = None,
        signed: bool = True,
    ) -> Any:
        """Send one request; the decoded JSON answer (None when empty) or an APIError."""
        url = self.url(path, query)
        if files is not None:
            request = self._http.build_request(method, url, files=files)
            content_type = "multipart/form-data"
        elif body is not None:
            request = self._http.build_request(
                method,
                url,
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            content_type = "application/json"
        else:
            request = self._http.build_request(
                method, url, content=b"", headers={"Content-Type": "text/plain"}
            )
            content_type = "text/plain"
        if signed:
            rel_url = request.url.raw_path.decode("ascii")
            request.headers.update(self.headers_for(method, rel_url, content_type))
        try:
            response = await self._http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent
            raise self.unreachable(exc) from exc
        except httpx.TransportError as exc:
            detail = str(exc) or type(exc).__name__
            raise ClientError(
                f"{method} {path} to the control plane at {self.config.endpoint} failed: {detail}"
            ) from exc
        if not response.is_success:
            raise APIError.from_response(
                response.status_code, response.reason_phrase, response.content
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                f"the control plane at {self.config.endpoint} sent a non-JSON answer"
                f" to {method} {path} (status {response.status_code})"
            ) from exc

    def unreachable(self, exc: BaseException) -> ConnectFailed:
        return ConnectFailed(
            f"cannot reach the control plane at {self.config.endpoint}: {_root_cause(exc)}"
        )

    # --- sessions --------------------------------------------------------------------------

    async def create_session(
        self,
        image: str,
        *,
        name: str | None = None,
        type: str = "interactive",
        resources: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        enqueue_only: bool = False,
        max_wait: float = 0,
        startup_command: str | None = None,
        reuse: bool = False,
        mounts: Sequence[str] = (),
        group: str = "default",
        scaling_group: str | None = None,
        dependencies: Sequence[str] = (),
        starts_at: str | None = None,
    ) -> dict[str, Any]:
        """POST /session; the server holds the answer until the session runs (unless
        enqueue_only, or max_wait seconds pass). `mounts`: folders as NAME[:PATH][:ro];
        `group` is the project, by name; `scaling_group` None: the first the project may use."""
        names, paths, options = mount_config(mounts)
        body: dict[str, Any] = {
            "tag": None,
            "name": name or f"sess-{secrets.token_hex(5)}",
            "config": {
                "mounts": names,
                "environ": dict(environ or {}),
                "resources": dict(resources or {}),
                "resource_opts": {},
                "scalingGroup": scaling_group,
                "mount_map": paths,
                "preopen_ports": [],
            },
            "dependencies": list(dependencies),
            "callback_url": None,
            "architecture": architecture(),
            "clusterSize": 1,
            "clusterMode": "single-node",
            "starts_at": starts_at,
            "bootstrap_script": None,
            "owner_access_key": None,
            "domain": "default",
            "group": group,
            "type": type,
            "enqueueOnly": enqueue_only,
            "maxWaitSeconds": max_wait,
            "reuseIfExists": reuse,
            "startupCommand": startup_command,
            "image": image,
        }
        if options:  # Shipyard's own key: left out otherwise, as the official client does
            body["config"]["mount_options"] = options
        result: dict[str, Any] = await self.request("POST", "/session", body=body)
        return result

    async def get_session(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/session/{_segment(ref)}")
        return result

    async def list_sessions(self, all: bool = False) -> list[dict[str, Any]]:
        query = {"all": "true" if all else "false"}
        result = await self.request("GET", "/session", query=query)
        return list(result["items"])

    async def logs(self, ref: str) -> str:
        result = await self.request("GET", f"/session/{_segment(ref)}/logs")
        return str(result["result"]["logs"])

    async def upload(self, ref: str, files: Sequence[Path], basedir: Path) -> None:
        """POST /session/<ref>/upload: one multipart part named `src` per file, named by its
        path relative to `basedir`."""

        def read_all() -> list[tuple[str, tuple[str, bytes, str]]]:
            base = basedir.resolve()
            parts = []
            for path in files:
                relative = path.resolve().relative_to(base).as_posix()
                parts.append(("src", (relative, path.read_bytes(), "application/octet-stream")))
            return parts

        try:
            parts = await trio.to_thread.run_sync(read_all)
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot upload: {exc}") from exc
        await self.request("POST", f"/session/{_segment(ref)}/upload", files=parts)

    async def destroy_session(self, ref: str, forced: bool = False) -> dict[str, Any]:
        query = {"forced": "true"} if forced else None
        result = await self.request("DELETE", f"/session/{_segment(ref)}", query=query)
        return result if isinstance(result, dict) else {}

    @asynccontextmanager
    async def session_events(
        self, query: Mapping[str, str] | None = None
    ) -> AsyncIterator[AsyncIterator[tuple[str, Any]]]:
        """GET /events/session (by default every session of ours) as (event, data) pairs.

        Entered once the server says it is subscribed (its `: listening` comment), so no event
        of what the caller does next is missed.
        """
        request = self._http.build_request("GET", self.url("/events/session", query))
        rel_url = request.url.raw_path.decode("ascii")
        request.headers.update(self.headers_for("GET", rel_url, "application/octet-stream"))
        try:
            response = await self._http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self.unreachable(exc) from exc
        except httpx.TransportError as exc:
            raise ClientError(f"GET /events/session failed: {exc or type(exc).__name__}") from exc
        try:
            if not response.is_success:
                body = await response.aread()
                raise APIError.from_response(response.status_code, response.reason_phrase, body)
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith(": listening"):
                    break
            yield _sse_events(lines)
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()

    @asynccontextmanager
    async def execute_stream(
        self,
        session_id: str,
        mode: str,
        code: str = "",
        options: Mapping[str, Any] | None = None,
        on_input: InputHandler | None = None,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Run code over the execute WebSocket; yields an async iterator of result frames.

        ``async with api.execute_stream(sid, "query", "print(1)") as frames:
              async for frame in frames: ...``

        A context manager rather than a bare generator because the WebSocket owns a nursery.
        """
        from client import _stream  # trio_websocket is only needed here

        def sign(rel_url: str) -> dict[str, str]:
            # No Content-Type header goes out; the server reads application/octet-stream (§3.2).
            headers = self.headers_for("GET", rel_url, "application/octet-stream")
            return headers | {"User-Agent": USER_AGENT}

        url = self.url(f"/stream/session/{_segment(session_id)}/execute")
        first = {"code": code, "mode": mode, "options": dict(options or {})}
        async with _stream.open_execute(url, sign, self.unreachable, first, on_input) as frames:
            yield frames

    @asynccontextmanager
    async def websocket(
        self, path: str, query: Mapping[str, str] | None = None
    ) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        """A signed WebSocket to `path`, e.g. a session's pty."""
        from client import _stream

        def sign(rel_url: str) -> dict[str, str]:
            headers = self.headers_for("GET", rel_url, "application/octet-stream")
            return headers | {"User-Agent": USER_AGENT}

        async with _stream.open_websocket(self.url(path, query), sign, self.unreachable) as ws:
            yield ws

    # --- admin: keypairs -------------------------------------------------------------------

    async def list_keypairs(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/admin/keypairs"))["items"])

    async def list_nodes(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/nodes"))["items"])

    async def create_keypair(self, user_email: str, is_admin: bool = False) -> dict[str, Any]:
        body = {"user": user_email, "isAdmin": is_admin}
        result: dict[str, Any] = await self.request("POST", "/admin/keypairs", body=body)
        return result

    async def delete_keypair(self, access_key: str) -> None:
        await self.request("DELETE", f"/admin/keypairs/{_segment(access_key)}")

    # --- admin: domains, projects, users, presets, audit ------------------------------------

    async def list_domains(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/admin/domains"))["items"])

    async def create_domain(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/admin/domains", body={"name": name})
        return result

    async def list_projects(self, domain: str | None = None) -> list[dict[str, Any]]:
        query = {"domain": domain} if domain else None
        return list((await self.request("GET", "/admin/projects", query=query))["items"])

    async def create_project(self, domain: str, name: str) -> dict[str, Any]:
        body = {"domain": domain, "name": name}
        result: dict[str, Any] = await self.request("POST", "/admin/projects", body=body)
        return result

    async def set_member(self, domain: str, project: str, email: str, member: bool) -> None:
        path = f"/admin/projects/{_segment(domain)}/{_segment(project)}/members/{_segment(email)}"
        await self.request("PUT" if member else "DELETE", path)

    async def list_users(
        self, domain: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        query = {k: v for k, v in {"domain": domain, "status": status}.items() if v}
        return list((await self.request("GET", "/admin/users", query=query or None))["items"])

    async def create_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/admin/users", body=dict(body))
        return result

    async def update_user(self, email: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/admin/users/{_segment(email)}"
        result: dict[str, Any] = await self.request("PATCH", path, body=dict(changes))
        return result

    async def list_presets(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/resource/presets"))["presets"])

    async def check_presets(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/resource/check-presets")
        return result

    async def create_preset(
        self, name: str, slots: Mapping[str, str], shared_memory: str | None
    ) -> dict[str, Any]:
        body = {"name": name, "resourceSlots": dict(slots), "sharedMemory": shared_memory}
        result: dict[str, Any] = await self.request("POST", "/admin/presets", body=body)
        return result

    async def delete_preset(self, name: str) -> None:
        await self.request("DELETE", f"/admin/presets/{_segment(name)}")

    async def audit(self, filters: Mapping[str, str]) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/admin/audit", query=filters or None))["items"])

    # --- images ----------------------------------------------------------------------------

    async def list_images(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/images"))["items"])

    async def register_image(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/images", body={"name": name})
        return result

    async def forget_image(self, name: str) -> None:
        await self.request("DELETE", "/images/" + quote(name, safe="/:@"))

    async def alias_image(self, alias: str, target: str) -> dict[str, Any]:
        body = {"alias": alias, "target": target}
        result: dict[str, Any] = await self.request("POST", "/images/aliases", body=body)
        return result

    async def dealias_image(self, alias: str) -> None:
        await self.request("DELETE", f"/images/aliases/{_segment(alias)}")

    # --- misc ------------------------------------------------------------------------------

    async def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        """POST /admin/gql; the `data`, or a ClientError with the first error's message."""
        body = {"query": query, "variables": dict(variables or {})}
        answer = await self.request("POST", "/admin/gql", body=body)
        if answer.get("errors"):
            raise ClientError(answer["errors"][0].get("message", "GraphQL error"))
        return answer["data"]

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/health", signed=False)
        return result
