"""One WebSocket connection from the node to the control plane, from dial to close.

The node owns the TCP stream itself and closes it whatever happened: trio-websocket's own
`open_websocket_url` leaves the socket open when the server rejects the handshake or is the
side that closes (trio-websocket 0.12), which a node reconnecting for weeks cannot afford.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from node.errors import ControlPlaneUnreachable, NodeError

CONNECT_PATH = "/node/connect"
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
MAX_FRAME = 64 * 1024 * 1024  # uploads arrive as one frame
Session = Callable[[WebSocketConnection], Awaitable[None]]


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    secure: bool

    @classmethod
    def parse(cls, controlplane_url: str) -> Endpoint:
        """The control plane's address from its URL: http(s)://host[:port][/anything]."""
        url = controlplane_url if "//" in controlplane_url else f"//{controlplane_url}"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise NodeError(f"controlplane_url {controlplane_url!r}: {exc}") from exc
        secure = parts.scheme in ("https", "wss")
        if not parts.hostname:
            raise NodeError(f"controlplane_url {controlplane_url!r} names no host")
        return cls(parts.hostname, port or (443 if secure else 80), secure)

    @property
    def url(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{CONNECT_PATH}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port in (80, 443) else f"{host}:{self.port}"

    async def open_stream(self) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
        if self.secure:
            return await trio.open_ssl_over_tcp_stream(
                self.host,
                self.port,
                ssl_context=ssl.create_default_context(),
                https_compatible=True,
            )
        return await trio.open_tcp_stream(self.host, self.port)


async def run_connection(endpoint: Endpoint, token: str, session: Session) -> None:
    """Dial the control plane, run `session(ws)` until it returns, then close the connection.

    ControlPlaneUnreachable when it cannot connect or refuses the handshake. `session` should
    return (not raise) when the connection closes.
    """
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await endpoint.open_stream()
    except (OSError, trio.TooSlowError) as exc:
        raise ControlPlaneUnreachable(f"cannot connect to {endpoint.url}: {exc!s}") from exc
    try:
        async with trio.open_nursery() as nursery:  # holds the connection's reader task
            with trio.fail_after(CONNECT_TIMEOUT):
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    endpoint.host_header,
                    CONNECT_PATH,
                    extra_headers=[(b"authorization", f"Bearer {token}".encode())],
                    max_message_size=MAX_FRAME,
                )
            await session(ws)
            # a clean close when the session ends; when cancelled (shutdown), dropping the TCP
            # stream below is enough: the reader task is cancelled too, so no handshake could end
            with trio.move_on_after(CLOSE_TIMEOUT):
                await ws.aclose()
            nursery.cancel_scope.cancel()
    except* ConnectionRejected as group:
        status = getattr(group.exceptions[0], "status_code", "?")
        raise ControlPlaneUnreachable(
            f"{endpoint.url} refused this node (HTTP {status}); check node_token"
        ) from None
    except* (trio.TooSlowError, HandshakeError, ConnectionClosed) as group:
        raise ControlPlaneUnreachable(
            f"no WebSocket handshake with {endpoint.url}: {group.exceptions[0]!r}"
        ) from None
    finally:
        await trio.aclose_forcefully(stream)
