"""Test doubles of the control plane's peers: a node that answers like a real one over the
real hub and wire encoding, but starts no containers (scheduler and lifecycle tests, and
benchmarks of the control plane alone)."""

from __future__ import annotations

import base64
import io
import tarfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio

import wire
from controlplane import reconcile
from controlplane.activity import Clock
from controlplane.core import Core
from controlplane.nodehub import NodeConnection

TEST_IMAGE = "shipyard-test/python:3.11"  # the image a FakeNode reports, as the test image


@dataclass
class FakeNode:
    """A node that answers like a real one but starts no containers (scheduler tests only).

    `hold_runs`: Execute gets no output until the kernel is destroyed (then it ends, as a real
    run does when its container goes). `on_create`: awaited (in the background) before the
    CreateKernel reply, to put something in the middle of a session start;
    `die_after_create`: the node is killed right after that reply. `image_labels`: more labels
    of the test image (service ports). A relayed stream to a port echoes what it gets; a
    terminal is refused.
    """

    core: Core
    node_id: str
    slots: dict[str, str]
    kernels: dict[str, str] = field(default_factory=dict)  # kernel id -> session id
    architecture: str = "x86_64"
    hold_runs: bool = False
    on_create: Callable[[], Awaitable[None]] | None = None
    die_after_create: bool = False
    died: bool = False
    runs: dict[str, str] = field(default_factory=dict)  # held run id -> kernel id
    inputs: list[wire.Input] = field(default_factory=list)
    image_labels: dict[str, str] = field(default_factory=dict)
    creates: list[wire.CreateKernel] = field(default_factory=list)  # every one received
    opens: list[wire.OpenStream] = field(default_factory=list)  # every stream asked for
    interrupts: list[str] = field(default_factory=list)  # kernel ids
    restarts: list[str] = field(default_factory=list)  # kernel ids
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def connect(self, kernels: list[wire.KernelInfo] | None = None) -> NodeConnection:
        """Connect and register, reporting `kernels` (none by default)."""
        conn = NodeConnection(self.node_id, self._receive)
        self.conn = conn
        self.died = False
        self.core.hub.attach(conn)
        conn.facts = await reconcile.on_register(self.core, self.register_message(kernels))
        return conn

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, re-checked after every frame the node receives."""
        with anyio.fail_after(10):
            while not condition():
                await self._changed.wait()

    def die(self) -> None:
        """The node process is killed: its connection drops, nothing more is answered."""
        self.died = True
        self.core.hub.detach(self.conn)

    def register_message(self, kernels: list[wire.KernelInfo] | None = None) -> wire.Register:
        return wire.Register(
            node_id=self.node_id,
            version="test",
            architecture=self.architecture,
            network_mode="none",
            slots=self.slots,
            images=[
                wire.ImageInfo(
                    TEST_IMAGE,
                    "sha256:test",
                    1000,
                    self.architecture,
                    ["python"],
                    {
                        "ai.shipyard.kernel": "1",
                        "ai.shipyard.recipe.revision": "2",
                        **self.image_labels,
                    },
                )
            ],
            kernels=kernels or [],
            protocol=wire.PROTOCOL,
        )

    def _reply(self, req_id: str, result: wire.Result) -> None:
        self.conn.deliver_reply(wire.Reply(req_id, True, wire.result_dict(result)))

    async def _receive(self, frame: str | bytes) -> None:
        try:
            self._handle(frame)
        finally:
            self._changed.set()
            self._changed = anyio.Event()

    def _handle(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):  # relay data: echo it, and take more at once
            stream_id, data = wire.decode_data(frame)
            self.conn.streams.on_message(wire.StreamWindow(stream_id, len(data)))
            self.conn.streams.on_data(frame)
            return
        message = wire.decode(frame)  # what a real node would read
        if isinstance(message, wire.CreateKernel):
            self.creates.append(message)
        if isinstance(message, wire.OpenStream):
            self.opens.append(message)
        match message:
            case wire.OpenStream(target="pty"):
                self.conn.deliver_reply(
                    wire.Reply(message.req_id, False, error="the fake node has no terminals")
                )
            case wire.OpenStream():
                self._reply(message.req_id, wire.StreamOpened(message.stream_id))
            case wire.CreateKernel() if self.on_create is not None:
                self.core.spawn(self._create_later, message)
            case wire.CreateKernel():
                self.kernels[message.kernel_id] = message.session_id
                self._reply(message.req_id, wire.KernelCreated(uuid.uuid4().hex))
            case wire.DestroyKernel():
                existed = self.kernels.pop(message.kernel_id, None) is not None
                for run_id, kernel_id in list(self.runs.items()):
                    if kernel_id == message.kernel_id:
                        self.output(wire.RunOutput(run_id, "finished", exit_code=137))
                logs = "fake logs\n" if existed else None
                self._reply(message.req_id, wire.KernelDestroyed(0 if existed else None, logs))
            case wire.GetLogs():
                self._reply(message.req_id, wire.KernelLogs("fake logs\n"))
            case wire.Input():
                self.inputs.append(message)
            case wire.ListFiles():
                entry = wire.FileEntry("x.py", "-rw-r--r--", 5, 0.0, 0.0, 0.0)
                self._reply(message.req_id, wire.FilesListed([entry]))
            case wire.DownloadFiles():
                archives = [_tar(path.rsplit("/", 1)[-1], b"fake\n") for path in message.paths]
                self._reply(message.req_id, wire.FilesArchived(archives))
            case wire.RestartKernel():
                self.restarts.append(message.kernel_id)
                self._reply(message.req_id, wire.KernelRestarted())
            case wire.CompleteCode():
                self._reply(message.req_id, wire.Completions([message.code + "_done"]))
            case wire.InterruptKernel():
                self.interrupts.append(message.kernel_id)
                self._reply(message.req_id, wire.KernelInterrupted())
            case wire.Execute() if self.hold_runs:
                self.runs[message.run_id] = message.kernel_id
            case wire.Execute():
                self.output(wire.RunOutput(message.run_id, "stdout", "ran\n"))
                self.output(wire.RunOutput(message.run_id, "finished", exit_code=0))

    def output(self, output: wire.RunOutput) -> None:
        # through the wire encoding too, as the control plane receives it
        decoded = wire.decode(wire.encode(output))
        assert isinstance(decoded, wire.RunOutput)
        self.core.hub.deliver_output(decoded)

    async def _create_later(self, message: wire.CreateKernel) -> None:
        assert self.on_create is not None
        await self.on_create()
        if not self.died:
            self.kernels[message.kernel_id] = message.session_id
            self._reply(message.req_id, wire.KernelCreated(uuid.uuid4().hex))
            if self.die_after_create:
                self.die()


class ManualClock(Clock):
    """A clock that moves only when a test advances it; whoever sleeps on it wakes then."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)  # where the database's timestamps are
        self._moved = anyio.Event()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        until = self._now + timedelta(seconds=seconds)
        while self._now < until:
            await self._moved.wait()

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._moved.set()
        self._moved = anyio.Event()


def _tar(name: str, data: bytes) -> str:
    """A base64 tar archive of one file, as a node sends it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(out.getvalue()).decode()
