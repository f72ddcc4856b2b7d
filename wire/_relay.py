"""Relayed byte streams over the node link: flow control, shared by both ends.

Many streams share the one WebSocket between a node and the control plane, so no stream may make
the connection's receive loop wait: a receiver accepts every data frame into memory at once and
is protected by credit instead. Each side may have at most `STREAM_WINDOW` bytes in flight that
the other has not acknowledged; the reader acknowledges (`StreamWindow`) as it consumes, so a
slow reader stops the writer at the far end (back-pressure) and holds at most one window per
stream. A writer that sends past its credit broke the protocol: the stream is closed.

`StreamClose` ends a stream both ways. Data queued before it is still delivered (frames keep
their order on the WebSocket), then `receive` returns b"". A lost connection ends every stream
it carried (`RelayStreams.close_all`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from wire._messages import (
    STREAM_WINDOW,
    StreamClose,
    StreamWindow,
    decode_data,
    encode,
    encode_data,
)

# sends one WebSocket frame: text (a JSON message) or binary (relay data)
SendFrame = Callable[[str | bytes], Awaitable[None]]
CHUNK = 256 * 1024  # the most one data frame carries


class StreamClosed(Exception):
    """The stream ended (either side closed it, or the connection went)."""


class RelayStream:
    """One end of a stream: `send` waits for credit, `receive` returns what arrived."""

    def __init__(
        self, stream_id: int, send_frame: SendFrame, forget: Callable[[int], None]
    ) -> None:
        self.stream_id = stream_id
        self._send_frame = send_frame
        self._forget = forget
        self._credit = STREAM_WINDOW  # what we may still send
        self._inbox: deque[bytes] = deque()
        self._inbox_size = 0
        self._consumed = 0  # read since our last StreamWindow
        self._changed = anyio.Event()
        self._close_sent = False
        self.closed = False
        self.error = ""  # why it closed, when it broke

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def send(self, data: bytes) -> None:
        """Send all of `data`, waiting while the other side has no room; StreamClosed once the
        stream is closed."""
        view = memoryview(data)
        while view:
            changed = self._changed
            if self.closed:
                raise StreamClosed(self.error or "the stream is closed")
            if self._credit <= 0:
                await changed.wait()
                continue
            size = min(len(view), self._credit, CHUNK)
            self._credit -= size
            await self._send_frame(encode_data(self.stream_id, bytes(view[:size])))
            view = view[size:]

    async def receive(self) -> bytes:
        """The next bytes that arrived; b"" once the stream is closed and all was read."""
        while not self._inbox:
            changed = self._changed
            if self.closed:
                return b""
            await changed.wait()
        data = self._inbox.popleft()
        self._inbox_size -= len(data)
        self._consumed += len(data)
        if self._consumed >= STREAM_WINDOW // 4 and not self.closed:
            consumed, self._consumed = self._consumed, 0
            with contextlib.suppress(Exception):  # the connection went: close_all follows
                await self._send_frame(encode(StreamWindow(self.stream_id, consumed)))
        return data

    async def aclose(self, error: str = "") -> None:
        """End the stream both ways and tell the other side (once)."""
        self._closed(error)
        if not self._close_sent:
            self._close_sent = True
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._send_frame(encode(StreamClose(self.stream_id, error)))

    # --- called by the connection's receive loop: never waits -----------------------------

    def deliver(self, data: bytes) -> None:
        if self.closed:
            return  # we closed it; our StreamClose is on its way
        if self._inbox_size + len(data) > STREAM_WINDOW:
            self._closed("the other side sent more than the flow-control window")
            return
        self._inbox.append(data)
        self._inbox_size += len(data)
        self._wake()

    def grant(self, size: int) -> None:
        self._credit += size
        self._wake()

    def closed_by_peer(self, error: str) -> None:
        self._close_sent = True  # no need to answer a close
        self._closed(error)

    def _closed(self, error: str) -> None:
        if not self.closed:
            self.closed = True
            self.error = error
            self._forget(self.stream_id)
            self._wake()


class RelayStreams:
    """The streams one connection carries, by id, and the routing of their frames."""

    def __init__(self, send_frame: SendFrame) -> None:
        self._send_frame = send_frame
        self._streams: dict[int, RelayStream] = {}
        self._next_id = 1

    def open(self, stream_id: int | None = None) -> RelayStream:
        """A new stream end: with the id the other side chose, or a fresh one of ours."""
        if stream_id is None:
            stream_id, self._next_id = self._next_id, self._next_id + 1
        if stream_id in self._streams:
            raise ValueError(f"stream {stream_id} is already open")
        stream = RelayStream(stream_id, self._send_frame, self._forget)
        self._streams[stream_id] = stream
        return stream

    def __len__(self) -> int:
        return len(self._streams)

    def _forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def on_data(self, frame: bytes) -> None:
        """A binary frame arrived (FrameError when it is malformed)."""
        stream_id, data = decode_data(frame)
        stream = self._streams.get(stream_id)
        if stream is not None:  # else it closed here; the other side learns it from our close
            stream.deliver(data)

    def on_message(self, message: StreamWindow | StreamClose) -> None:
        stream = self._streams.get(message.stream_id)
        if stream is None:
            return
        if isinstance(message, StreamWindow):
            stream.grant(message.size)
        else:
            stream.closed_by_peer(message.error)

    def close_all(self, error: str) -> None:
        """The connection is gone: every stream ends, without a frame to send."""
        for stream in list(self._streams.values()):
            stream.closed_by_peer(error)
