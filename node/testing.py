"""Test doubles for the node: a fake control plane that node agents dial, a node to dial it, and
an in-memory container runtime.

`FakeControlPlane` is a real WebSocket server on 127.0.0.1 speaking the wire contract; it
checks the node's Bearer token, records every frame the node sends, and lets a test send
requests and await their replies and run outputs. `MemoryRuntime` stands in for Docker where
no container needs to run (scheduler tests, benchmarks).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

from node.agent import serve
from node.config import NodeConfig
from node.errors import ContainerNotFound, ImageNotFound, NodeError
from node.runtime import (
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    EngineInfo,
    ImageRecord,
    Limits,
    RuntimeEvent,
)
from wire import Execute, Input, Message, Register, Reply, RunOutput, decode, encode

M = TypeVar("M", bound=Message)
DEFAULT_WAIT = 30.0


class FakeControlPlane:
    def __init__(self, token: str, *, port: int = 0) -> None:
        self.token = token
        self.port = port  # 0: any free port, known once serving
        self.url = ""  # http://127.0.0.1:PORT once serving
        self.frames: list[Message] = []  # everything any node sent, in order
        self.connections = 0  # accepted so far
        self.rejected = 0  # refused for a wrong path or token
        self._ws: WebSocketConnection | None = None
        self._changed = trio.Event()
        self.patience = DEFAULT_WAIT  # seconds any one wait may take before the test fails

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; `self.url` is set before this reports started."""
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(
                    serve_websocket,
                    self._handle,
                    "127.0.0.1",
                    self.port,
                    None,
                    max_message_size=64 * 1024 * 1024,
                )
            )
            self.port = server.port
            self.url = f"http://127.0.0.1:{server.port}"
            task_status.started()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _handle(self, request: WebSocketRequest) -> None:
        headers = {name.lower(): value for name, value in request.headers}
        expected = f"Bearer {self.token}".encode()
        if request.path != "/node/connect" or headers.get(b"authorization") != expected:
            self.rejected += 1
            self._notify()
            await request.reject(401, body=b"bad node token")
            return
        ws = await request.accept()
        self._ws = ws
        self.connections += 1
        self._notify()
        try:
            while True:
                self.frames.append(decode(await ws.get_message()))
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            self._notify()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    # --- waiting -----------------------------------------------------------------------------

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, re-checked whenever a frame or connection arrives."""
        with trio.fail_after(self.patience):
            while not condition():
                await self._changed.wait()

    def of_type(self, cls: type[M], *, since: int = 0) -> list[M]:
        return [f for f in self.frames[since:] if isinstance(f, cls)]

    async def wait_for(
        self, cls: type[M], predicate: Callable[[M], bool] = lambda _: True, *, since: int = 0
    ) -> M:
        """The first frame of type `cls` at index >= `since` matching `predicate`."""
        found: list[M] = []

        def match() -> bool:
            found[:] = [f for f in self.of_type(cls, since=since) if predicate(f)][:1]
            return bool(found)

        await self.wait_until(match)
        return found[0]

    async def registration(self, count: int = 1) -> Register:
        """The `count`-th Register received (1-based)."""
        await self.wait_until(lambda: len(self.of_type(Register)) >= count)
        return self.of_type(Register)[count - 1]

    # --- talking to the node -----------------------------------------------------------------

    async def send(self, message: Message) -> None:
        await self.send_text(encode(message))

    async def send_text(self, text: str) -> None:
        """Send one frame as it is (also one the node cannot read)."""
        if self._ws is None:
            raise ConnectionError("no node is connected")
        await self._ws.send_message(text)

    async def drop(self) -> None:
        """Close the node's connection, as a restarting control plane would."""
        if self._ws is not None:
            await self._ws.aclose(1012, "restarting")

    async def request(self, make: Callable[[str], Message]) -> Reply:
        """Send `make(req_id)` and return the node's Reply to it."""
        req_id = uuid.uuid4().hex
        since = len(self.frames)
        await self.send(make(req_id))
        return await self.wait_for(Reply, lambda r: r.req_id == req_id, since=since)

    async def execute(
        self,
        kernel_id: str,
        code: str = "",
        *,
        mode: Literal["query", "batch"] = "query",
        options: dict[str, Any] | None = None,
        inputs: Iterable[str] = (),
    ) -> list[RunOutput]:
        """Run code on a kernel and return its outputs through `finished`, answering each
        waiting-input with the next of `inputs`."""
        run_id = uuid.uuid4().hex
        since = len(self.frames)
        answers = iter(inputs)
        outputs: list[RunOutput] = []
        await self.send(Execute(kernel_id, run_id, mode, code, options or {}))
        with trio.fail_after(self.patience):
            while not outputs or outputs[-1].kind != "finished":
                output = await self.wait_for(RunOutput, lambda o: o.run_id == run_id, since=since)
                since = self.frames.index(output, since) + 1
                outputs.append(output)
                if output.kind == "waiting-input":
                    await self.send(Input(kernel_id, run_id, next(answers)))
        return outputs


class NodeProcess:
    """`serve(config)` in a nursery, stopped and started again like a node process would be;
    on Docker unless given another runtime (a `MemoryRuntime`, say)."""

    def __init__(
        self, nursery: trio.Nursery, config: NodeConfig, runtime: ContainerRuntime | None = None
    ) -> None:
        self._nursery = nursery
        self.config = config
        self._runtime = runtime
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()

    async def start(self) -> None:
        scope = self._scope = trio.CancelScope()
        done = self._done = trio.Event()

        async def run(task_status: trio.TaskStatus[None]) -> None:
            try:
                with scope:
                    await serve(self.config, runtime=self._runtime, task_status=task_status)
            finally:
                done.set()

        await self._nursery.start(run)

    async def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._done.wait()
            self._scope = None


def text_of(outputs: Iterable[RunOutput], kind: str = "stdout") -> str:
    return "".join(o.data for o in outputs if o.kind == kind)


class MemoryRuntime:
    """A `ContainerRuntime` kept in memory, for scheduler tests and benchmarks: containers are
    records, not processes, but they behave as Docker's do where the node relies on it (the
    contract tests in tests/node/test_runtime_contract.py run on both).

    Names are unique, an unknown image or container is refused as Docker refuses it, a created
    container is not running (exit code 0) until started, removing a running one kills it, and
    every stop emits a "die" event carrying the container's labels and exit code. A test ends a
    container's program with `exit` or `oom_kill` and makes it print with `write_log`.

    It runs no program: a kernel created through the node on it gets no runner to dial in, so
    `Kernels.create` would wait for one in vain. It serves what needs containers, not code: the
    agent's Register, adoption and kernel-end reports (tests/node/test_agent_memory.py),
    placement and bookkeeping at scale.
    """

    def __init__(self, images: Iterable[ImageRecord] = ()) -> None:
        self._images = {record.id: record for record in images}
        self._containers: dict[str, _MemoryContainer] = {}
        self._listeners: list[trio.MemorySendChannel[RuntimeEvent]] = []
        self.created = 0  # containers created so far, for benchmarks

    async def ping(self) -> None:
        pass

    async def info(self) -> EngineInfo:
        return EngineInfo(runtimes=frozenset({"runc"}))

    async def create(self, spec: ContainerSpec) -> str:
        images = [r for r in self._images.values() if spec.image in (r.id, *r.tags)]
        if not images:
            raise ImageNotFound(f"creating container {spec.name}: no such image: {spec.image}")
        if any(c.spec.name == spec.name for c in self._containers.values()):
            raise NodeError(f"creating container {spec.name}: the name is already in use")
        container_id = uuid.uuid4().hex + uuid.uuid4().hex
        # as Docker does, the container's labels go over those it inherits from its image
        labels = {**images[0].labels, **spec.labels}
        self._containers[container_id] = _MemoryContainer(spec, labels)
        self.created += 1
        return container_id

    def _get(self, container_id: str) -> _MemoryContainer:
        try:
            return self._containers[container_id]
        except KeyError:
            raise ContainerNotFound(f"no such container: {container_id[:12]}") from None

    async def start(self, container_id: str) -> None:
        container = self._get(container_id)
        if not container.running:  # as Docker does, a stopped container starts afresh
            container.running, container.exit_code, container.oom_killed = True, None, False

    async def remove(self, container_id: str) -> None:
        container = self._containers.get(container_id)
        if container is None:
            return
        if container.running:
            await self._stop(container_id, 137, oom=False)
        del self._containers[container_id]

    async def restart(self, container_id: str) -> None:
        self._get(container_id)
        await self._stop(container_id, 137, oom=False)
        await self.start(container_id)

    async def update(self, container_id: str, limits: Limits) -> None:
        container = self._get(container_id)
        container.spec = dataclasses.replace(
            container.spec,
            nano_cpus=limits.nano_cpus,
            mem_limit=limits.mem_limit,
            pids_limit=limits.pids_limit,
        )

    async def interrupt(self, container_id: str) -> None:
        container = self._get(container_id)
        if not container.running:
            raise NodeError(f"interrupting container {container_id[:12]}: it is not running")
        container.interrupts += 1

    async def inspect(self, container_id: str) -> ContainerState:
        return self._get(container_id).state(container_id)

    async def containers(self, labels: Mapping[str, str]) -> list[ContainerState]:
        return [
            c.state(cid)
            for cid, c in self._containers.items()
            if all(c.labels.get(k) == v for k, v in labels.items())
        ]

    async def logs(self, container_id: str, *, tail: int | None = None) -> str:
        lines = self._get(container_id).log.splitlines(keepends=True)
        return "".join(lines[-tail:] if tail else lines)

    async def images(self, label: str) -> list[ImageRecord]:
        return [r for r in self._images.values() if label in r.labels]

    async def follow_events(
        self,
        send: trio.MemorySendChannel[RuntimeEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._listeners.append(send)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._listeners.remove(send)

    # --- what a test does to the containers' programs ------------------------------------------

    async def exit(self, container_id: str, code: int) -> None:
        """The container's program exits with `code`."""
        await self._stop(container_id, code, oom=False)

    async def oom_kill(self, container_id: str) -> None:
        """The container's program is killed for exceeding its memory limit."""
        await self._stop(container_id, 137, oom=True)

    def write_log(self, container_id: str, text: str) -> None:
        """The container's program prints `text`."""
        self._get(container_id).log += text

    async def add_image(self, record: ImageRecord) -> None:
        self._images[record.id] = record
        await self._emit(RuntimeEvent("image", "tag", record.id))

    async def _stop(self, container_id: str, code: int, *, oom: bool) -> None:
        container = self._get(container_id)
        if not container.running:
            raise NodeError(f"container {container_id[:12]} is not running")
        container.running, container.exit_code, container.oom_killed = False, code, oom
        attributes = {**container.labels, "exitCode": str(code)}
        await self._emit(RuntimeEvent("container", "die", container_id, attributes))

    async def _emit(self, event: RuntimeEvent) -> None:
        for send in list(self._listeners):
            await send.send(event)


@dataclass
class _MemoryContainer:
    spec: ContainerSpec
    labels: dict[str, str]
    running: bool = False
    exit_code: int | None = None  # None until it stopped (a created container reports 0)
    oom_killed: bool = False
    log: str = ""
    interrupts: int = 0  # SIGINTs it received

    def state(self, container_id: str) -> ContainerState:
        return ContainerState(
            id=container_id,
            labels=dict(self.labels),
            running=self.running,
            exit_code=None if self.running else (self.exit_code or 0),
            oom_killed=self.oom_killed,
            mem_limit=self.spec.mem_limit,
            nano_cpus=self.spec.nano_cpus,
        )
