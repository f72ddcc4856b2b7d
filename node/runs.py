"""Execute requests: stream a run's output from the kernel's runner to the control plane.

Every Execute ends with exactly one `finished`. When the runner's connection breaks first, the
kernel died (an OOM kill, most often): the user is told why in a final stderr item.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from node.errors import ContainerNotFound, KernelNotFound, NodeError
from node.kernels import Kernel, Kernels
from node.runner_client import RUNNER_GONE, RunnerConnection
from node.runtime import ContainerRuntime, ContainerState
from wire import Execute, Input, RunOutput, format_bytes

log = logging.getLogger("shipyard.node.runs")

Emit = Callable[[RunOutput], Awaitable[None]]
DEATH_GRACE = 3.0  # how long a kernel whose runner vanished may take to be seen as stopped
INPUT_TIMEOUT = 5.0
_EVENT_KINDS = {"stdout", "stderr", "waiting-input", "clean-finished", "build-finished", "finished"}


def runner_request(req: Execute) -> dict[str, Any]:
    if req.mode == "query":
        return {"op": "query", "code": req.code}

    def command(name: str) -> str | None:
        value = req.options.get(name)
        return None if value in (None, "", "*") else str(value)

    return {
        "op": "batch",
        "clean": command("clean"),
        "build": command("build"),
        "exec": command("exec"),
    }


def _output(run_id: str, event: dict[str, Any]) -> RunOutput | None:
    kind = event.get("kind")
    if kind not in _EVENT_KINDS:
        return None
    if kind == "waiting-input":
        return RunOutput(
            run_id, "waiting-input", data=str(event.get("prompt") or ""),
            password=bool(event.get("password")),
        )  # fmt: skip
    if kind.endswith("finished"):
        code = event.get("exit_code")
        return RunOutput(
            run_id,
            kind,
            exit_code=int(code) if code is not None else None,
            reason=str(event.get("reason") or ""),
        )
    return RunOutput(run_id, kind, data=str(event.get("data") or ""))


def _coalesced(run_id: str, events: list[dict[str, Any]]) -> list[RunOutput]:
    """Outputs for events that arrived together, adjacent stdout (or stderr) items merged:
    a loop printing a million lines must not cost two million frames."""
    outputs = [o for o in (_output(run_id, e) for e in events) if o is not None]
    merged: list[RunOutput] = []
    for kind, group in itertools.groupby(outputs, key=lambda o: o.kind):
        if kind in ("stdout", "stderr"):
            merged.append(RunOutput(run_id, kind, data="".join(o.data for o in group)))
        else:
            merged.extend(group)
    return merged


class Runs:
    """The runs in flight on this node, so that Input finds the run waiting for it."""

    def __init__(self, kernels: Kernels, runtime: ContainerRuntime) -> None:
        self._kernels = kernels
        self._runtime = runtime
        self._live: dict[str, RunnerConnection] = {}

    async def execute(self, req: Execute, emit: Emit) -> None:
        """Run `req` and emit its outputs; always ends with exactly one `finished`."""
        finished = False

        async def emit_once(output: RunOutput) -> None:
            nonlocal finished
            finished = finished or output.kind == "finished"
            await emit(output)

        try:
            await self._execute(req, emit_once)
        except Exception as exc:
            log.exception("run %s failed", req.run_id)
            if not finished:
                text = f"\nshipyard: the node failed to run this: {exc}\n"
                await emit(RunOutput(req.run_id, "stderr", data=text))
                await emit(RunOutput(req.run_id, "finished", exit_code=1))

    async def _execute(self, req: Execute, emit: Emit) -> None:
        try:
            kernel = await self._kernels.get(req.kernel_id)
        except NodeError as exc:
            text = (
                f"no such kernel: {req.kernel_id}" if isinstance(exc, KernelNotFound) else str(exc)
            )
            await emit(RunOutput(req.run_id, "stderr", data=f"shipyard: {text}\n"))
            await emit(RunOutput(req.run_id, "finished", exit_code=1))
            return
        try:
            async with self._kernels.connect(kernel) as conn:
                self._live[req.run_id] = conn
                try:
                    await conn.send(runner_request(req))
                    while (event := await conn.receive()) is not None:
                        events = [event, *conn.take_buffered()]
                        for output in _coalesced(req.run_id, events):
                            await emit(output)
                            if output.kind == "finished":
                                return
                finally:
                    self._live.pop(req.run_id, None)
        except RUNNER_GONE as exc:
            log.info("run %s: lost the runner of kernel %s: %r", req.run_id, kernel.kernel_id, exc)
        reason, exit_code = await self._explain_death(kernel)
        await emit(RunOutput(req.run_id, "stderr", data=f"\nshipyard: {reason}\n"))
        await emit(RunOutput(req.run_id, "finished", exit_code=exit_code, reason=reason))

    async def input(self, req: Input) -> None:
        conn = self._live.get(req.run_id)
        if conn is None:
            log.info("input for run %s, which is not running here", req.run_id)
            return
        with trio.move_on_after(INPUT_TIMEOUT):
            # a broken connection is reported by the run's own task
            with contextlib.suppress(*RUNNER_GONE):
                await conn.send({"op": "input", "text": req.text})

    async def _explain_death(self, kernel: Kernel) -> tuple[str, int]:
        """Why the runner went away (for a person) and the run's exit code."""
        state: ContainerState | None = None
        try:
            with trio.move_on_after(DEATH_GRACE):
                while True:
                    state = await self._runtime.inspect(kernel.container_id)
                    if not state.running:
                        break
                    await trio.sleep(0.05)
        except ContainerNotFound:
            return "the kernel was removed", 1
        if state is None or state.running:
            return "lost the connection to the kernel's runner", 1
        if state.oom_killed:
            mem = state.mem_limit
            limit = f"memory limit {format_bytes(mem)}" if mem else "no memory limit"
            return f"the kernel was killed: out of memory ({limit})", 137
        code = state.exit_code if state.exit_code is not None else 1
        return f"the kernel exited unexpectedly (exit code {code})", code
