"""Test doubles for the node: a fake control plane that node agents dial, and a node to dial it.

`FakeControlPlane` is a real WebSocket server on 127.0.0.1 speaking the wire contract; it
checks the node's Bearer token, records every frame the node sends, and lets a test send
requests and await their replies and run outputs.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
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
        if self._ws is None:
            raise ConnectionError("no node is connected")
        await self._ws.send_message(encode(message))

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
    """`serve(config)` in a nursery, stopped and started again like a node process would be."""

    def __init__(self, nursery: trio.Nursery, config: NodeConfig) -> None:
        self._nursery = nursery
        self.config = config
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()

    async def start(self) -> None:
        scope = self._scope = trio.CancelScope()
        done = self._done = trio.Event()

        async def run(task_status: trio.TaskStatus[None]) -> None:
            try:
                with scope:
                    await serve(self.config, task_status=task_status)
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
