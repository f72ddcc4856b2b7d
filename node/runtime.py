"""The container runtime seam: what the node needs from a container engine, and Docker behind it.

The docker SDK is synchronous, so every call runs in a worker thread under one CapacityLimiter;
library errors are re-raised as `node.errors` at this boundary. The engine's event stream is
followed by one dedicated thread that hands events to trio through a memory channel.

Security is not a parameter: every container this runtime creates is unprivileged, drops all
capabilities, has `no-new-privileges`, an init process, a read-only root filesystem and a capped
log (the engine's disk must not fill up with what a session prints), whatever the spec says.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import docker
import docker.errors
import docker.types
import trio

from node.errors import ContainerNotFound, ImageNotFound, NodeError, RuntimeUnavailable

log = logging.getLogger("shipyard.node.runtime")
T = TypeVar("T")

# Events the node reacts to: a container stopping, and anything that changes the image list.
# json-file rotation: the newest 2 x 8 MiB of a kernel's output stay readable as its logs
_LOG_CONFIG = {"type": "json-file", "config": {"max-size": "8m", "max-file": "2"}}
_EVENT_FILTERS = {
    "type": ["container", "image"],
    "event": ["die", "import", "load", "tag", "untag", "delete"],
}


@dataclass(frozen=True)
class Bind:
    source: Path  # on the host
    target: str  # in the container
    read_only: bool = False


@dataclass(frozen=True)
class DeviceRequest:
    """One entry of the engine's `DeviceRequests` (the nvidia runtime, or CDI names)."""

    driver: str  # "nvidia" or "cdi"
    device_ids: tuple[str, ...]
    capabilities: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: list[str]
    labels: dict[str, str]
    user: str  # "uid:gid"
    environment: dict[str, str]
    working_dir: str
    binds: list[Bind]
    network_mode: str
    nano_cpus: int | None = None
    mem_limit: int | None = None  # bytes; swap is never granted on top
    pids_limit: int | None = None
    scratch: dict[str, int] = field(default_factory=dict)  # tmpfs mount point -> size in bytes
    # accelerators (node/accelerators): the engine's device requests, host device nodes, groups
    device_requests: list[DeviceRequest] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)  # "/dev/kfd:/dev/kfd:rwm"
    group_add: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    """What the engine can change on a created (even running) container."""

    nano_cpus: int
    mem_limit: int  # bytes; swap is never granted on top
    pids_limit: int


@dataclass(frozen=True)
class EngineInfo:
    """What accelerator plugins need to know about the engine."""

    runtimes: frozenset[str]  # "runc", and "nvidia" where the NVIDIA container toolkit is set up
    cdi_spec_dirs: tuple[str, ...] = ()  # where the engine reads CDI specs (empty: CDI is off)


@dataclass(frozen=True)
class ContainerState:
    id: str
    labels: dict[str, str]
    running: bool
    exit_code: int | None  # None while running
    oom_killed: bool
    mem_limit: int | None
    pid: int | None = None  # the container's init process on the host, while running
    nano_cpus: int | None = None  # its CPU limit (None: none)


@dataclass(frozen=True)
class ImageRecord:
    id: str
    tags: list[str]
    size_bytes: int
    architecture: str  # as the engine reports it: "amd64", "arm64"
    labels: dict[str, str]


@dataclass(frozen=True)
class RuntimeEvent:
    kind: Literal["container", "image"]
    action: str  # "die", "tag", "delete", ...
    id: str
    attributes: dict[str, str] = field(default_factory=dict)  # for containers: its labels too


class ContainerRuntime(Protocol):
    async def ping(self) -> None: ...
    async def info(self) -> EngineInfo: ...
    async def create(self, spec: ContainerSpec) -> str: ...
    async def start(self, container_id: str) -> None: ...
    async def remove(self, container_id: str) -> None: ...
    async def interrupt(self, container_id: str) -> None: ...
    async def restart(self, container_id: str) -> None: ...
    async def update(self, container_id: str, limits: Limits) -> None: ...
    async def inspect(self, container_id: str) -> ContainerState: ...
    async def containers(self, labels: Mapping[str, str]) -> list[ContainerState]: ...
    async def logs(self, container_id: str, *, tail: int | None = None) -> str: ...
    async def images(self, label: str) -> list[ImageRecord]: ...
    async def follow_events(
        self,
        send: trio.MemorySendChannel[RuntimeEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFound(f"{what}: {exc.explanation}") from exc
    except docker.errors.NotFound as exc:
        raise ContainerNotFound(f"{what}: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise NodeError(f"{what}: {exc.explanation}") from exc
        raise RuntimeUnavailable(f"{what}: the container engine said {exc.explanation}") from exc
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        raise RuntimeUnavailable(f"{what}: cannot reach the container engine ({exc})") from exc


class DockerRuntime:
    """`ContainerRuntime` over the docker SDK's low-level API (no implicit pulls, no extra gets)."""

    def __init__(self, client: docker.DockerClient, *, max_threads: int = 8) -> None:
        self._api = client.api
        self._client = client
        self._limiter = trio.CapacityLimiter(max_threads)
        # the event stream holds its thread for the node's lifetime: not one of the shared ones
        self._events_limiter = trio.CapacityLimiter(1)

    @classmethod
    async def connect(cls) -> DockerRuntime:
        """A runtime for the engine the environment points at (DOCKER_HOST or the local socket)."""

        def _open() -> docker.DockerClient:
            with _translated("connecting to the container engine"):
                return docker.from_env()

        return cls(await trio.to_thread.run_sync(_open))

    def close(self) -> None:
        self._client.close()

    async def _run(self, what: str, fn: Callable[[], T]) -> T:
        def call() -> T:
            with _translated(what):
                return fn()

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def ping(self) -> None:
        await self._run("checking the container engine", self._api.ping)

    async def info(self) -> EngineInfo:
        raw = await self._run("asking the container engine about itself", self._api.info)
        return EngineInfo(
            runtimes=frozenset(raw.get("Runtimes") or {}),
            cdi_spec_dirs=tuple(raw.get("CDISpecDirs") or ()),
        )

    async def create(self, spec: ContainerSpec) -> str:
        host_config = self._api.create_host_config(
            init=True,
            privileged=False,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            network_mode=spec.network_mode,
            nano_cpus=spec.nano_cpus,
            mem_limit=spec.mem_limit,
            memswap_limit=spec.mem_limit,
            pids_limit=spec.pids_limit,
            read_only=True,
            log_config=_LOG_CONFIG,
            # exec: programs a session builds in /tmp must run; its size counts as memory
            tmpfs={
                target: f"size={size},mode=1777,exec,nosuid,nodev"
                for target, size in spec.scratch.items()
            },
            mounts=[
                docker.types.Mount(b.target, str(b.source), type="bind", read_only=b.read_only)
                for b in spec.binds
            ],
            device_requests=[
                docker.types.DeviceRequest(
                    driver=r.driver,
                    device_ids=list(r.device_ids),
                    capabilities=[list(c) for c in r.capabilities],
                )
                for r in spec.device_requests
            ]
            or None,
            devices=spec.devices or None,
            group_add=spec.group_add or None,
        )
        created = await self._run(
            f"creating container {spec.name} from {spec.image}",
            lambda: self._api.create_container(
                spec.image,
                command=spec.command,
                name=spec.name,
                labels=spec.labels,
                user=spec.user,
                environment=spec.environment,
                working_dir=spec.working_dir,
                host_config=host_config,
                detach=True,
            ),
        )
        return str(created["Id"])

    async def start(self, container_id: str) -> None:
        await self._run(
            f"starting container {container_id[:12]}", lambda: self._api.start(container_id)
        )

    async def remove(self, container_id: str) -> None:
        """Kill and remove; a container that is already gone (or going) is fine."""

        def _remove() -> None:
            try:
                self._api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409 with force: a removal is already in progress
                    raise

        await self._run(f"removing container {container_id[:12]}", _remove)

    async def restart(self, container_id: str) -> None:
        """Stop (SIGKILL at once: the kernel's state is to be dropped) and start again."""
        await self._run(
            f"restarting container {container_id[:12]}",
            lambda: self._api.restart(container_id, timeout=0),
        )

    async def update(self, container_id: str, limits: Limits) -> None:
        # docker-py's update_container has no NanoCpus (the limit every kernel is created with;
        # the engine refuses a CpuQuota beside it), so the request is posted as it does
        data = {
            "NanoCpus": limits.nano_cpus,
            "Memory": limits.mem_limit,
            "MemorySwap": limits.mem_limit,
            "PidsLimit": limits.pids_limit,
        }
        url = self._api._url("/containers/{0}/update", container_id)
        await self._run(
            f"updating the limits of container {container_id[:12]}",
            lambda: self._api._result(self._api._post_json(url, data=data), True),
        )

    async def interrupt(self, container_id: str) -> None:
        """SIGINT to the container's main process (its init passes it to the runner)."""
        await self._run(
            f"interrupting container {container_id[:12]}",
            lambda: self._api.kill(container_id, signal="SIGINT"),
        )

    async def inspect(self, container_id: str) -> ContainerState:
        attrs = await self._run(
            f"inspecting container {container_id[:12]}",
            lambda: self._api.inspect_container(container_id),
        )
        return _state(attrs)

    async def containers(self, labels: Mapping[str, str]) -> list[ContainerState]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}

        def _list() -> list[ContainerState]:
            states = []
            for summary in self._api.containers(all=True, filters=filters):
                # a summary lacks the exit code and OOM state; one removed meanwhile is skipped
                with contextlib.suppress(docker.errors.NotFound):
                    states.append(_state(self._api.inspect_container(summary["Id"])))
            return states

        return await self._run("listing containers", _list)

    async def logs(self, container_id: str, *, tail: int | None = None) -> str:
        raw = await self._run(
            f"reading the logs of container {container_id[:12]}",
            lambda: self._api.logs(
                container_id, stdout=True, stderr=True, timestamps=False, tail=tail or "all"
            ),
        )
        return bytes(raw).decode("utf-8", errors="replace")

    async def images(self, label: str) -> list[ImageRecord]:
        def _images() -> list[ImageRecord]:
            records = []
            for summary in self._api.images(filters={"label": label}):
                with contextlib.suppress(docker.errors.NotFound):
                    attrs = self._api.inspect_image(summary["Id"])
                    records.append(
                        ImageRecord(
                            id=attrs["Id"],
                            tags=[t for t in attrs.get("RepoTags") or [] if t != "<none>:<none>"],
                            size_bytes=int(attrs.get("Size") or 0),
                            architecture=str(attrs.get("Architecture") or ""),
                            labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
                        )
                    )
            return records

        return await self._run("listing images", _images)

    async def follow_events(
        self,
        send: trio.MemorySendChannel[RuntimeEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Forward engine events to `send` until cancelled; reports started once listening.

        If the stream breaks (the engine restarted), it is reopened with a capped backoff; events
        in the gap are lost (the next Register reports the kernels' and images' actual state).
        """
        delay = 0.2
        started = False
        while True:
            try:
                stream = await self._run(
                    "following engine events",
                    lambda: self._api.events(decode=True, filters=_EVENT_FILTERS),
                )
            except RuntimeUnavailable as exc:
                if not started:
                    raise
                log.warning("%s; retrying in %.1f s", exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not started:
                task_status.started()
                started = True
            opened = trio.current_time()
            await self._pump(stream, send)
            if trio.current_time() - opened > 30:
                delay = 0.2  # it had been working: this is a fresh outage
            log.warning("the engine's event stream ended; reopening it in %.1f s", delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _pump(self, stream: Any, send: trio.MemorySendChannel[RuntimeEvent]) -> None:
        def pump() -> None:
            try:
                for raw in stream:
                    event = _event(raw)
                    if event is not None:
                        trio.from_thread.run(send.send, event)
            except (trio.Cancelled, trio.RunFinishedError, trio.BrokenResourceError):
                return  # the node is shutting down
            except Exception as exc:  # a stream torn down mid-read fails in assorted ways
                log.debug("event stream stopped: %r", exc)

        async def close_when_cancelled() -> None:
            try:
                await trio.sleep_forever()
            finally:
                # shutting the socket down is what unblocks the thread's read
                with contextlib.suppress(Exception):
                    stream.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_when_cancelled)
            await trio.to_thread.run_sync(pump, limiter=self._events_limiter)
            nursery.cancel_scope.cancel()


def _state(attrs: Mapping[str, Any]) -> ContainerState:
    state = attrs.get("State") or {}
    running = bool(state.get("Running"))
    exit_code = state.get("ExitCode")
    return ContainerState(
        id=str(attrs["Id"]),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        running=running,
        exit_code=None if running or exit_code is None else int(exit_code),
        oom_killed=bool(state.get("OOMKilled")),
        mem_limit=int((attrs.get("HostConfig") or {}).get("Memory") or 0) or None,
        pid=int(state.get("Pid") or 0) or None if running else None,
        nano_cpus=int((attrs.get("HostConfig") or {}).get("NanoCpus") or 0) or None,
    )


def _event(raw: Mapping[str, Any]) -> RuntimeEvent | None:
    kind = raw.get("Type")
    if kind not in ("container", "image"):
        return None
    actor = raw.get("Actor") or {}
    return RuntimeEvent(
        kind=kind,
        action=str(raw.get("Action") or raw.get("status") or ""),
        id=str(actor.get("ID") or raw.get("id") or ""),
        attributes={str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()},
    )
