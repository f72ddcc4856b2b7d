"""The node agent: dial the control plane, register, heartbeat, answer requests, report events.

Task tree (one root nursery, opened by `serve`):

    serve
    ├── runtime.follow_events   engine events -> memory channel (one worker thread)
    ├── Agent.handle_events     die -> KernelExited, image changes -> rescan flag
    ├── Agent.watch_images      rescan on the flag -> ImagesChanged
    ├── Pool.run                keep warm kernels ready (node/pool.py); removes them when stopped
    ├── sdnotify.watchdog       keep-alive pings when systemd runs us with WatchdogSec
    └── Agent.connect_forever   dial, Register, then per connection:
        ├── heartbeat loop
        ├── one task per request (cancelled when the connection drops)
        └── two per relayed stream (node/relay.py; they end with the connection too)

Kernels are never touched on shutdown or disconnect: sessions outlive the node process.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import logging
import platform
from collections.abc import Awaitable, Callable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from hostlib import __version__, sdnotify
from node import hostfs
from node.accelerators import Accelerators, DeviceSample
from node.config import NodeConfig
from node.errors import ControlPlaneUnreachable, KernelNotFound, NodeError
from node.kernels import (
    LABEL_KERNEL,
    LABEL_NODE,
    LABEL_POOL,
    Kernels,
    check_kernel_uid,
    check_state_dir,
    describe_exit,
)
from node.link import Endpoint, run_connection
from node.pool import Pool
from node.relay import open_stream
from node.resources import capacity
from node.runs import Runs
from node.runtime import ContainerRuntime, DockerRuntime, RuntimeEvent
from node.stats import Sampler, StatsSample
from wire import (
    PROTOCOL,
    CompleteCode,
    Completions,
    CreateKernel,
    DestroyKernel,
    DeviceStats,
    DownloadFiles,
    Execute,
    FilesArchived,
    FilesListed,
    FilesWritten,
    FrameError,
    FrameRejected,
    GetLogs,
    Heartbeat,
    ImageInfo,
    ImagesChanged,
    Input,
    InterruptKernel,
    KernelCreated,
    KernelDestroyed,
    KernelExited,
    KernelInterrupted,
    KernelLogs,
    KernelRestarted,
    KernelStats,
    ListFiles,
    Message,
    OpenStream,
    Register,
    RelayStreams,
    Reply,
    Request,
    RestartKernel,
    Result,
    Slots,
    StreamClose,
    StreamWindow,
    Upload,
    decode,
    encode,
    result_dict,
)

log = logging.getLogger("shipyard.node")

IMAGE_LABEL = "ai.shipyard.kernel"
ALIASES_LABEL = "ai.shipyard.aliases"
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0
_ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64"}


async def serve(
    config: NodeConfig,
    *,
    runtime: ContainerRuntime | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the node agent until cancelled. Reports started once it follows the engine's events.

    Raises NodeError when the node cannot start at all (no container engine, unusable state dir).
    """
    # a bad URL or state dir fails before anything starts
    endpoint = Endpoint.parse(config.controlplane_url)
    check_state_dir(config.state_dir)
    check_kernel_uid(config.kernel_uid)
    docker_runtime = None
    if runtime is None:
        runtime = docker_runtime = await DockerRuntime.connect()
    try:
        await runtime.ping()
        try:
            await trio.to_thread.run_sync(hostfs.install_runner, config.state_dir)
        except OSError as exc:
            raise NodeError(f"cannot install the runner under {config.state_dir}: {exc}") from exc
        engine = await runtime.info()
        accelerators = await trio.to_thread.run_sync(Accelerators.open, config, engine)
        agent = Agent(config, runtime, endpoint, accelerators)
        send, receive = trio.open_memory_channel[RuntimeEvent](256)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(runtime.follow_events, send)
                nursery.start_soon(agent.handle_events, receive)
                nursery.start_soon(agent.watch_images)
                nursery.start_soon(agent.pool.run)
                nursery.start_soon(sdnotify.watchdog)
                task_status.started()
                await agent.connect_forever()
        finally:
            agent.close()
            accelerators.close()
    finally:
        if docker_runtime is not None:
            docker_runtime.close()


class Agent:
    def __init__(
        self,
        config: NodeConfig,
        runtime: ContainerRuntime,
        endpoint: Endpoint,
        accelerators: Accelerators | None = None,
    ) -> None:
        self._config = config
        self._endpoint = endpoint
        self._runtime = runtime
        self._accelerators = accelerators or Accelerators([])
        self._kernels = Kernels(config, runtime, self._accelerators)
        self.pool = Pool(config, self._kernels)
        self._runs = Runs(self._kernels, runtime)
        self._sampler = Sampler(self._accelerators)
        self._ws: WebSocketConnection | None = None  # set once Register went out on it
        self._images_dirty = trio.Event()
        self._images_sent: list[ImageInfo] | None = None
        self._backoff = BACKOFF_FIRST

    def close(self) -> None:
        """Stop listening for the kernels' runners; the kernels themselves keep running."""
        self._kernels.close()

    async def send(self, message: Message) -> None:
        """Send on the current connection; dropped while there is none (Register catches up)."""
        ws = self._ws
        if ws is None:
            log.debug("not connected; dropped %s", message.type)
            return
        try:
            await ws.send_message(encode(message))
        except ConnectionClosed:
            log.debug("connection closed; dropped %s", message.type)

    # --- the connection ---------------------------------------------------------------------

    async def connect_forever(self) -> None:
        """Stay connected: redial with a capped backoff whenever the connection is lost."""
        while True:
            try:
                await run_connection(self._endpoint, self._config.node_token, self._session)
            except ControlPlaneUnreachable as exc:
                log.warning("%s; retrying in %.1f s", exc, self._backoff)
            else:
                log.warning("lost the control plane; reconnecting in %.1f s", self._backoff)
            await trio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    async def _session(self, ws: WebSocketConnection) -> None:
        try:
            await ws.send_message(encode(await self._register()))
        except (ConnectionClosed, NodeError) as exc:
            log.warning("could not register: %s", exc)
            return
        log.info("registered with the control plane as %s", self._config.node_id)
        # systemd (Type=notify) counts the node as started once it first registered
        sdnotify.ready(f"registered with {self._endpoint.url} as {self._config.node_id}")
        self._backoff = BACKOFF_FIRST
        self._ws = ws
        streams = RelayStreams(ws.send_message)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeats)
                while True:
                    try:
                        frame = await ws.get_message()
                    except ConnectionClosed:
                        break
                    if isinstance(frame, bytes):
                        self._relay_data(streams, frame)
                    else:
                        await self._dispatch(nursery, frame, streams)
                nursery.cancel_scope.cancel()
        finally:
            self._ws = None
            streams.close_all("the control plane connection was lost")

    async def _register(self) -> Register:
        kernels = await self._kernels.scan()
        images = await self._scan_images()
        self._images_sent = images
        self.pool.images_seen(images)
        return Register(
            node_id=self._config.node_id,
            version=__version__,
            architecture=platform.machine(),
            network_mode=self._config.network_mode,
            # what the kernels may ask for: cpu and mem, and every accelerator plugin's slot
            slots={**capacity(self._config), **Slots(self._accelerators.capacity()).to_wire()},
            images=images,
            kernels=kernels,
            accelerators=[dataclasses.asdict(d) for d in self._accelerators.devices()],
            protocol=PROTOCOL,
        )

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep(self._config.heartbeat_interval)
            # bounded: a busy engine (a burst of kernels starting) must never hold a heartbeat
            # back; kernels whose process is not known yet are sampled next time
            with trio.move_on_after(self._config.heartbeat_interval / 2):
                await self._kernels.find_pids()
            tracked = self._kernels.tracked()
            sample = await trio.to_thread.run_sync(self._sampler.sample, tracked)
            await self.send(heartbeat(sample))

    # --- requests ---------------------------------------------------------------------------

    def _relay_data(self, streams: RelayStreams, frame: bytes) -> None:
        try:
            streams.on_data(frame)
        except FrameError as exc:
            log.warning("could not read a frame from the control plane: %s", exc)

    async def _dispatch(self, nursery: trio.Nursery, text: str, streams: RelayStreams) -> None:
        try:
            message = decode(text)
        except FrameError as exc:
            # a newer control plane may send what we do not know: say so, and stay connected
            log.warning("could not read a frame from the control plane: %s", exc)
            if exc.req_id:
                await self.send(Reply(exc.req_id, ok=False, error=f"node cannot read: {exc}"))
            else:
                await self.send(FrameRejected(exc.frame_type, str(exc)))
            return
        if isinstance(message, Execute):
            nursery.start_soon(self._runs.execute, message, self.send)
        elif isinstance(message, Input):
            await self._runs.input(message)  # in order, and quick: one line to a local socket
        elif isinstance(message, StreamWindow | StreamClose):
            streams.on_message(message)
        elif isinstance(message, OpenStream):
            work = functools.partial(open_stream, self._kernels, message, streams, nursery)
            nursery.start_soon(self._answer, message, work)
        elif isinstance(
            message,
            CreateKernel
            | DestroyKernel
            | GetLogs
            | Upload
            | ListFiles
            | DownloadFiles
            | InterruptKernel
            | CompleteCode
            | RestartKernel,
        ):
            nursery.start_soon(self._answer, message, functools.partial(self._handle, message))
        elif isinstance(message, FrameRejected):
            log.warning(
                "the control plane could not read our %s frame: %s",
                message.frame_type,
                message.error,
            )
        else:
            log.warning("ignored a %s frame: not a request", message.type)

    async def _answer(self, request: Request, work: Callable[[], Awaitable[Result]]) -> None:
        try:
            result = await work()
        except NodeError as exc:
            reply = Reply(request.req_id, ok=False, error=str(exc))
        except Exception as exc:
            log.exception("%s %s failed", request.type, request.req_id)
            reply = Reply(request.req_id, ok=False, error=f"node {self._config.node_id}: {exc!r}")
        else:
            reply = Reply(request.req_id, ok=True, result=result_dict(result))
        await self.send(reply)

    async def _handle(
        self,
        request: CreateKernel
        | DestroyKernel
        | GetLogs
        | Upload
        | ListFiles
        | DownloadFiles
        | InterruptKernel
        | CompleteCode
        | RestartKernel,
    ) -> Result:
        if isinstance(request, CreateKernel):
            return KernelCreated(await self.pool.create(request))
        if isinstance(request, DestroyKernel):
            # the last logs travel with the answer: ending a session is one round trip
            logs = None
            with contextlib.suppress(KernelNotFound):
                logs = await self._kernels.logs(request.kernel_id)
            exit_code = await self._kernels.destroy(request.kernel_id)
            self.pool.wake()  # its room may be the pool's again
            return KernelDestroyed(exit_code, logs)
        if isinstance(request, GetLogs):
            return KernelLogs(await self._kernels.logs(request.kernel_id))
        if isinstance(request, ListFiles):
            return FilesListed(await self._kernels.list_files(request.kernel_id, request.path))
        if isinstance(request, DownloadFiles):
            archives = await self._kernels.download(
                request.kernel_id, request.paths, request.max_bytes
            )
            return FilesArchived([base64.b64encode(a).decode() for a in archives])
        if isinstance(request, RestartKernel):
            await self._kernels.restart(request.kernel_id)
            return KernelRestarted()
        if isinstance(request, CompleteCode):
            return Completions(await self._kernels.complete(request.kernel_id, request.code))
        if isinstance(request, InterruptKernel):
            await self._kernels.interrupt(request.kernel_id)
            return KernelInterrupted()
        return FilesWritten(await self._kernels.upload(request.kernel_id, request.files))

    # --- engine events ----------------------------------------------------------------------

    async def handle_events(self, events: trio.MemoryReceiveChannel[RuntimeEvent]) -> None:
        async for event in events:
            if event.kind == "image":
                self._images_dirty.set()
            elif event.action == "die" and event.attributes.get(LABEL_NODE) == self._config.node_id:
                self._kernels.stopped(event.id)  # a kernel starting now fails at once
                await self._kernel_died(event)

    async def _kernel_died(self, event: RuntimeEvent) -> None:
        kernel_id = event.attributes.get(LABEL_KERNEL) or self._kernels.kernel_of(event.id)
        if not kernel_id and LABEL_POOL in event.attributes:
            self.pool.lost(event.id)  # a warm kernel, not handed out
            return
        if kernel_id:
            self._kernels.release_devices(kernel_id)
        if not kernel_id or self._kernels.exit_is_expected(kernel_id):
            return
        try:
            state = await self._runtime.inspect(event.id)
        except NodeError:  # removed meanwhile: all we know is in the event
            code = event.attributes.get("exitCode")
            exit_code = int(code) if code and code.lstrip("-").isdigit() else None
            message = KernelExited(kernel_id, exit_code, False, f"exited with code {exit_code}")
        else:
            message = KernelExited(
                kernel_id, state.exit_code, state.oom_killed, describe_exit(state)
            )
        log.info("kernel %s stopped on its own: %s", kernel_id, message.reason)
        await self.send(message)

    async def watch_images(self) -> None:
        while True:
            await self._images_dirty.wait()
            self._images_dirty = trio.Event()
            try:
                images = await self._scan_images()
            except NodeError as exc:
                log.warning("could not list images: %s", exc)
                continue
            if images != self._images_sent:
                self._images_sent = images
                self.pool.images_seen(images)
                await self.send(ImagesChanged(images))

    async def _scan_images(self) -> list[ImageInfo]:
        infos: list[ImageInfo] = []
        for record in await self._runtime.images(IMAGE_LABEL):
            aliases = [a.strip() for a in record.labels.get(ALIASES_LABEL, "").split(",")]
            arch = _ARCHITECTURES.get(record.architecture, record.architecture)
            infos.extend(
                ImageInfo(
                    tag,
                    record.id,
                    record.size_bytes,
                    arch,
                    [a for a in aliases if a],
                    dict(record.labels),
                )
                for tag in record.tags
            )
        return sorted(infos, key=lambda info: info.name)


def heartbeat(sample: StatsSample) -> Heartbeat:
    """The statistics sample as the control plane gets it."""

    def devices(samples: list[DeviceSample]) -> list[DeviceStats]:
        return [
            DeviceStats(d.plugin, d.device_id, d.util_pct, d.mem_used, d.mem_total) for d in samples
        ]

    node = sample.node
    return Heartbeat(
        cpu_pct=node.cpu_pct,
        mem_used_bytes=node.mem_used,
        mem_total_bytes=node.mem_total,
        devices=devices(node.devices),
        kernels=[
            KernelStats(
                k.kernel_id,
                k.cpu_pct,
                k.cpu_used_ms,
                k.mem_used,
                k.mem_limit,
                k.io_read,
                k.io_write,
                k.net_rx,
                k.net_tx,
                devices(k.devices),
            )
            for k in sample.kernels.values()
        ],
    )
