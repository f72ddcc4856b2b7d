"""The execute WebSocket, `GET /stream/session/<uuid>/execute` (docs/backendai-api.md §6.1).

After the upgrade the client sends one JSON text frame `{"code", "mode", "options"}`; the server
answers with one JSON text frame per result chunk until one whose status is "finished". A
"waiting-input" chunk is answered with the user's text as a raw (non-JSON) text frame.

We open the TCP stream ourselves and hand it to trio-websocket (`wrap_client_stream`) rather
than use `open_websocket_url`, because we must be able to close it: trio-websocket 0.12 leaves
the socket to the garbage collector when the server rejects the upgrade or closes first.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import trio
import trio_websocket

from client.errors import APIError, ClientError

CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
MAX_MESSAGE = 16 * 1024 * 1024

# Answers a waiting-input frame: gets the frame, returns the text to send (without newline).
InputHandler = Callable[[dict[str, Any]], Awaitable[str]]
# Signed headers for a GET of the given request target (path and query).
SignHeaders = Callable[[str], dict[str, str]]


@asynccontextmanager
async def open_execute(
    url: str,
    sign: SignHeaders,
    unreachable: Callable[[BaseException], ClientError],
    first: Mapping[str, Any],
    on_input: InputHandler | None,
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """Open the execute WebSocket at `url` (signed by `sign`), send `first`, and yield the
    result frames. `unreachable` makes the SDK's error for a control plane not reached."""
    async with open_websocket(url, sign, unreachable) as ws:
        await ws.send_message(json.dumps(dict(first)))
        frames = _frames(ws, on_input)
        try:
            yield frames
        finally:
            await frames.aclose()


@asynccontextmanager
async def open_websocket(
    url: str, sign: SignHeaders, unreachable: Callable[[BaseException], ClientError]
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A signed WebSocket to `url`, closed (and its TCP stream with it) on the way out;
    APIError when the server refuses the upgrade."""
    parts = urlsplit(url)
    endpoint = f"{parts.scheme}://{parts.netloc}"
    rel_url = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = sign(rel_url)
    stream = await _connect(unreachable, parts.scheme, parts.hostname or "", parts.port)
    host = parts.hostname or ""
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header += f":{parts.port}"
    ws: trio_websocket.WebSocketConnection | None = None
    try:
        async with trio.open_nursery() as nursery:  # holds the connection's reader task
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,
                        host_header,
                        rel_url,
                        extra_headers=[(k.encode(), v.encode()) for k, v in headers.items()],
                        max_message_size=MAX_MESSAGE,
                    )
                yield ws
            finally:
                with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    try:
                        if ws is not None:
                            await ws.aclose()  # the close handshake, unless the server did it
                    finally:
                        await stream.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _translate(endpoint, group) from None


def _translate(endpoint: str, group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside a nursery's group, as the SDK reports it."""
    if len(group.exceptions) != 1:
        return group
    exc = group.exceptions[0]
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return APIError.from_response(exc.status_code, "", exc.body or b"")
    if isinstance(exc, trio.TooSlowError):
        return ClientError(f"no WebSocket handshake from {endpoint} in time")
    if isinstance(exc, trio_websocket.ConnectionClosed | trio.BrokenResourceError):
        return ClientError(f"the connection to {endpoint} broke: {exc!r}")
    return exc


async def _connect(
    unreachable: Callable[[BaseException], ClientError], scheme: str, host: str, port: int | None
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            if scheme == "https":
                return await trio.open_ssl_over_tcp_stream(host, port or 443, https_compatible=True)
            return await trio.open_tcp_stream(host, port or 80)
    except (OSError, trio.TooSlowError) as exc:
        raise unreachable(exc) from exc


async def _frames(
    ws: trio_websocket.WebSocketConnection, on_input: InputHandler | None
) -> AsyncGenerator[dict[str, Any], None]:
    while True:
        try:
            message = await ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            detail = f"code {reason.code}" if reason else "no close frame"
            if reason and reason.reason:
                detail += f": {reason.reason}"
            raise ClientError(
                f"the execute stream closed before the run finished ({detail})"
            ) from None
        if not isinstance(message, str):
            continue  # non-text frames carry nothing for us, as in the reference client
        try:
            frame = json.loads(message)
        except ValueError:
            continue
        if not isinstance(frame, dict):
            continue
        yield frame
        status = frame.get("status")
        if status == "finished":
            return
        if status == "waiting-input":
            answer = await on_input(frame) if on_input is not None else ""
            with suppress(trio_websocket.ConnectionClosed):
                await ws.send_message(answer)  # if closed, get_message says how it ended
