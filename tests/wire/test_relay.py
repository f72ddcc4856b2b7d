"""Flow control of relayed streams: two ends joined by an in-memory "connection" that delivers
frames the way the node and the control plane do (binary data, JSON window and close frames),
run on both event loops the two sides use."""

from __future__ import annotations

import os

import anyio
import anyio.lowlevel
import pytest

import wire
from wire import STREAM_WINDOW, RelayStreams, StreamClosed

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Link:
    """Two connections' stream tables, each frame handed to the other's receive path."""

    def __init__(self) -> None:
        self.a = RelayStreams(self._to_b)
        self.b = RelayStreams(self._to_a)
        self.data_sent = 0

    @staticmethod
    def _route(streams: RelayStreams, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            streams.on_data(frame)
        else:
            message = wire.decode(frame)
            assert isinstance(message, wire.StreamWindow | wire.StreamClose)
            streams.on_message(message)

    async def _to_b(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.data_sent += len(frame) - 4
        self._route(self.b, frame)

    async def _to_a(self, frame: str | bytes) -> None:
        self._route(self.a, frame)


async def test_a_writer_stops_at_the_window_until_the_reader_reads() -> None:
    link = Link()
    writer = link.a.open()
    reader = link.b.open(writer.stream_id)
    payload = os.urandom(3 * STREAM_WINDOW + 12345)
    done = anyio.Event()

    async def write() -> None:
        await writer.send(payload)
        done.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(write)
        with anyio.fail_after(5):
            while link.data_sent < STREAM_WINDOW:
                await anyio.lowlevel.checkpoint()
        for _ in range(20):  # the writer gets nothing more in while nobody reads
            await anyio.lowlevel.checkpoint()
        assert link.data_sent == STREAM_WINDOW
        assert not done.is_set()
        received = bytearray()
        with anyio.fail_after(5):
            while len(received) < len(payload):
                received += await reader.receive()
        await done.wait()
    assert bytes(received) == payload


async def test_a_close_delivers_what_came_before_then_ends_both_ways() -> None:
    link = Link()
    a = link.a.open()
    b = link.b.open(a.stream_id)
    await a.send(b"last words")
    await a.aclose()
    assert await b.receive() == b"last words"
    assert await b.receive() == b""
    with pytest.raises(StreamClosed):
        await b.send(b"too late")
    assert len(link.a) == len(link.b) == 0


async def test_a_lost_connection_ends_every_stream_and_wakes_waiters() -> None:
    link = Link()
    a, b = link.a.open(), link.a.open()
    results: list[bytes] = []

    async def read(stream: wire.RelayStream) -> None:
        results.append(await stream.receive())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read, a)
        tasks.start_soon(read, b)
        await anyio.lowlevel.checkpoint()
        link.a.close_all("the node went away")
    assert results == [b"", b""]
    assert a.error == "the node went away"


async def test_a_sender_past_its_credit_breaks_only_its_stream() -> None:
    link = Link()
    honest = link.b.open(7)
    cheated = link.b.open(8)
    link.b.on_data(wire.encode_data(8, b"x" * (STREAM_WINDOW + 1)))
    assert cheated.closed and "window" in cheated.error
    link.b.on_data(wire.encode_data(7, b"fine"))
    assert not honest.closed
    assert await honest.receive() == b"fine"
    with pytest.raises(wire.FrameError):
        link.b.on_data(b"\x00\x00")
