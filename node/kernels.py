"""Kernels: the containers this node runs for sessions, and their folders on the host.

A kernel is found again from its container's labels and the folder named after its id, so a
restarted node adopts the kernels it left running; nothing about them lives only in memory but
the node's listening socket for each kernel, which a restarted node simply opens again (the
runner dials it again by itself).

Kernels run as `kernel_uid` (an id no host account uses) with a read-only root filesystem; they
can write only to their work filesystem (a quota-sized ext4 image, see node/hostfs.py), to `/tmp`
(a size-limited tmpfs, counted in the kernel's memory) and to Docker's 64 MiB `/dev/shm`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import pwd
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import trio

from node import hostfs, vfolders, workfiles
from node.accelerators import Accelerators, Allocation, ContainerDevices
from node.config import NodeConfig
from node.errors import (
    ContainerNotFound,
    ImageNotFound,
    KernelNotFound,
    KernelStartFailed,
    NodeError,
)
from node.runner_client import RUNNER_GONE, RunnerConnection, RunnerSocket, ping
from node.runtime import Bind, ContainerRuntime, ContainerSpec, ContainerState, Limits
from node.stats import Tracked
from wire import (
    CreateKernel,
    FileEntry,
    KernelInfo,
    Slots,
    SlotsError,
    UploadFile,
    format_bytes,
)

log = logging.getLogger("shipyard.node.kernels")

LABEL_KERNEL = "ai.shipyard.kernel-id"
LABEL_SESSION = "ai.shipyard.session-id"
LABEL_OWNER = "ai.shipyard.owner"
LABEL_NODE = "ai.shipyard.node-id"
LABEL_DEVICES = "ai.shipyard.devices"  # the accelerator devices it holds (Allocation.label_value)
# a warm kernel (node/pool.py) carries its pool id instead of the kernel labels: the engine cannot
# change labels, so its identity once handed out is the root-only CLAIM file in its folder
LABEL_POOL = "ai.shipyard.pool-id"
CLAIM = "claim.json"

SOCKET_MOUNT = "/run/shipyard"
RUNNER_SOCKET = f"{SOCKET_MOUNT}/{hostfs.SOCKET_NAME}"
MAX_SOCKET_PATH = 107  # bytes in a Unix socket address (sun_path) on Linux
# How long a starting kernel's runner has to answer: READY_TIMEOUT with a whole CPU, stretched
# for a kernel with less (the engine lets 0.02 CPU run 2 ms in each 100 ms, so its runner starts
# 50 times slower), up to READY_TIMEOUT_MAX, below the control plane's create timeout (180 s).
# A broken image whose runner never answers is removed after that; one whose container stops
# fails at once (the engine's "die" event, `stopped`).
READY_TIMEOUT, READY_TIMEOUT_MAX = 30.0, 150.0
# A kernel with less CPU than this starts with it, and gets its own share once its runner
# answers (before any of the session's code runs): the engine's start (runc's init runs in the
# container's cgroup) and the runner's would otherwise crawl at that share, 5 s at 0.02 CPU
# instead of 0.1, each holding one of the engine's threads. Setting the share costs one engine
# call (about 25 ms of the engine's CPU).
START_NANO_CPUS = 1_000_000_000
DIRS_AT_ONCE = 8
BUSY_POLL = 1.0  # how often a run waiting for a busy (or dead) runner checks its container
LOGS_LIMIT = 4 * 1024 * 1024  # a Reply must fit in one frame (the control plane takes 16 MiB)
_HEX12 = re.compile(r"^[0-9a-f]{12}")


@dataclass(frozen=True)
class Kernel:
    kernel_id: str
    session_id: str
    container_id: str
    dir: Path
    mem_limit: int | None
    runner: RunnerSocket
    pid: int | None = None  # its container's init process while running (for live statistics)
    nano_cpus: int | None = None

    @property
    def work(self) -> Path:
        return self.dir / "work"


@dataclass(frozen=True)
class Claim:
    """Who a handed-out warm kernel belongs to (its folder's CLAIM file)."""

    pool_id: str
    kernel_id: str
    session_id: str
    owner_access_key: str


def short_id(kernel_id: str) -> str:
    """The first 12 hex digits of a kernel id: its folder and container name."""
    match = _HEX12.match(kernel_id.replace("-", "").lower())
    if not match:
        raise NodeError(f"kernel id {kernel_id!r} must be a UUID (at least 12 hex digits)")
    return match.group(0)


def check_state_dir(state_dir: Path) -> None:
    """NodeError when kernel socket paths under `state_dir` would be too long to connect to."""
    longest = state_dir / hostfs.KERNELS_DIR / ("0" * 12) / hostfs.SOCKET_DIR / hostfs.SOCKET_NAME
    if len(bytes(longest)) > MAX_SOCKET_PATH:
        raise NodeError(
            f"state_dir {state_dir} is too long: kernel socket paths like {longest} must stay "
            f"within {MAX_SOCKET_PATH} bytes"
        )


def check_kernel_uid(uid: int) -> None:
    """NodeError when `uid` belongs to a host account: kernel files must belong to nobody real."""
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        return
    raise NodeError(
        f"kernel_uid {uid} is the host account {account.pw_name!r}; choose an id no account uses "
        "(the default, 65536, is outside the ranges Debian, useradd and systemd allocate)"
    )


def describe_exit(state: ContainerState) -> str:
    """Why a kernel stopped, for a person: 'killed: out of memory (limit 128 MiB)'."""
    if state.oom_killed:
        limit = f"limit {format_bytes(state.mem_limit)}" if state.mem_limit else "no memory limit"
        return f"killed: out of memory ({limit})"
    return f"exited with code {state.exit_code}"


class Kernels:
    """Create, find and destroy the kernels of one node."""

    def __init__(
        self,
        config: NodeConfig,
        runtime: ContainerRuntime,
        accelerators: Accelerators | None = None,
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._accelerators = accelerators or Accelerators([])
        self._known: dict[str, Kernel] = {}
        self._sockets: dict[str, RunnerSocket] = {}  # by kernel id, until destroyed or closed
        self._relays: dict[str, RunnerSocket] = {}  # the same for relayed streams (relay.sock)
        # kernel folders (mkfs and mount of their work filesystems) made at once; hostfs keeps
        # their disk reservations one at a time
        self._disk = trio.CapacityLimiter(DIRS_AT_ONCE)
        # kernels whose end the control plane caused or was told about in a Reply
        self._expected_exits: set[str] = set()
        # kernels restarted in place, each expecting the one "die" event of its restart
        self._restarting: set[str] = set()
        self._claims: dict[str, Claim] = {}  # handed-out warm kernels, by kernel id
        # containers whose runner is awaited, by id: the wait's scope, cancelled when the engine
        # says the container stopped (entered by `_wait_ready`; cancelled before, it ends at once)
        self._starting: dict[str, trio.CancelScope] = {}

    @contextlib.contextmanager
    def _watching(self, container_id: str) -> Iterator[None]:
        """While this lasts, the engine's "die" event of the container reaches `_wait_ready`."""
        self._starting[container_id] = trio.CancelScope()
        try:
            yield
        finally:
            del self._starting[container_id]

    def stopped(self, container_id: str) -> None:
        """The engine says this container stopped (its "die" event): a wait for its runner
        ends now."""
        if container_id in self._starting:
            self._starting[container_id].cancel()

    def exit_is_expected(self, kernel_id: str) -> bool:
        if kernel_id in self._restarting:
            self._restarting.discard(kernel_id)  # the stop of its restart: it lives on
            return True
        return kernel_id in self._expected_exits

    def _dir(self, kernel_id: str) -> Path:
        claim = self._claims.get(kernel_id)
        named = claim.pool_id if claim else kernel_id  # a warm kernel keeps its folder
        return self._config.state_dir / hostfs.KERNELS_DIR / short_id(named)

    def _labels(self, kernel_id: str) -> dict[str, str]:
        """The labels that find the kernel's container."""
        claim = self._claims.get(kernel_id)
        mark = {LABEL_POOL: claim.pool_id} if claim else {LABEL_KERNEL: kernel_id}
        return {**mark, LABEL_NODE: self._config.node_id}

    def _socket(self, kernel_id: str, kdir: Path) -> RunnerSocket:
        """The kernel's listening socket, opened (again, after a node restart) if need be."""
        runner = self._sockets.get(kernel_id)
        if runner is None:
            path = kdir / hostfs.SOCKET_DIR / hostfs.SOCKET_NAME
            try:
                runner = RunnerSocket(path, self._config.kernel_uid)
            except OSError as exc:
                raise NodeError(f"cannot listen for kernel {kernel_id} at {path}: {exc}") from exc
            self._sockets[kernel_id] = runner
        if kernel_id not in self._relays:
            path = kdir / hostfs.SOCKET_DIR / hostfs.RELAY_SOCKET_NAME
            try:
                self._relays[kernel_id] = RunnerSocket(path, self._config.kernel_uid)
            except OSError as exc:
                raise NodeError(f"cannot listen for kernel {kernel_id} at {path}: {exc}") from exc
        return runner

    def relay_socket(self, kernel: Kernel) -> RunnerSocket:
        """The socket the kernel's runner dials for relayed streams (node/relay.py)."""
        self._socket(kernel.kernel_id, kernel.dir)
        return self._relays[kernel.kernel_id]

    def _adopt(self, state: ContainerState, kernel_id: str) -> Kernel:
        kdir = self._dir(kernel_id)
        claim = self._claims.get(kernel_id)
        kernel = Kernel(
            kernel_id=kernel_id,
            session_id=claim.session_id if claim else state.labels.get(LABEL_SESSION, ""),
            container_id=state.id,
            dir=kdir,
            mem_limit=state.mem_limit,
            runner=self._socket(kernel_id, kdir),
            pid=state.pid,
            nano_cpus=state.nano_cpus,
        )
        self._known[kernel_id] = kernel
        return kernel

    def _kernel_id(self, state: ContainerState, claims: dict[str, Claim]) -> str | None:
        """The kernel a container of this node is: None for a warm kernel not handed out."""
        if LABEL_KERNEL in state.labels:
            return state.labels[LABEL_KERNEL]
        claim = claims.get(state.labels.get(LABEL_POOL, ""))
        if claim is None:
            return None
        self._claims[claim.kernel_id] = claim
        return claim.kernel_id

    async def scan(self) -> list[KernelInfo]:
        """Every container labelled with this node's id, running or not (for Register)."""
        states = await self._runtime.containers({LABEL_NODE: self._config.node_id})
        claims = await trio.to_thread.run_sync(self._read_claims)
        self._known.clear()
        allocator = self._accelerators.allocator
        allocator.reset()
        infos = []
        for state in states:
            kernel_id = self._kernel_id(state, claims)
            if kernel_id is None:
                continue
            if state.running and LABEL_DEVICES in state.labels:
                try:  # a restarted node holds again what its running kernels hold
                    allocator.restore(kernel_id, state.labels[LABEL_DEVICES])
                except NodeError as exc:
                    log.warning("%s", exc)
            try:
                kernel = self._adopt(state, kernel_id)
            except NodeError as exc:  # reported as it is; its runs will say what is wrong
                log.warning("%s", exc)
                session_id = state.labels.get(LABEL_SESSION, "")
            else:
                session_id = kernel.session_id
            infos.append(
                KernelInfo(
                    kernel_id=kernel_id,
                    session_id=session_id,
                    container_id=state.id,
                    running=state.running,
                    exit_code=state.exit_code,
                    oom_killed=state.oom_killed,
                )
            )
        return infos

    def close(self) -> None:
        """Stop listening for every kernel (the node is stopping; the kernels keep running)."""
        for runner in [*self._sockets.values(), *self._relays.values()]:
            runner.close()
        self._sockets.clear()
        self._relays.clear()
        self._known.clear()

    async def get(self, kernel_id: str) -> Kernel:
        if kernel_id in self._known:
            return self._known[kernel_id]
        states = await self._runtime.containers(self._labels(kernel_id))
        if not states:
            raise KernelNotFound(f"no such kernel: {kernel_id} on node {self._config.node_id}")
        return self._adopt(states[0], kernel_id)

    async def create(self, req: CreateKernel) -> str:
        """Start a kernel and wait until its runner answers; returns the container id.

        On any failure (or cancellation) the container and the folder are removed again.
        """
        slots = requested(req)
        try:
            allocation = self._accelerators.allocator.allocate(req.kernel_id, slots)
        except NodeError as exc:
            raise NodeError(
                f"cannot create kernel {req.kernel_id} on node {self._config.node_id}: {exc}"
            ) from exc
        try:
            kernel = await self._launch(
                req.kernel_id, req.session_id, lambda kdir: self._spec(req, kdir, slots, allocation)
            )
        except BaseException:
            self._accelerators.allocator.release(req.kernel_id)
            raise
        self._known[req.kernel_id] = kernel
        return kernel.container_id

    async def warm(self, image: str, slots: Slots) -> Kernel:
        """Start a warm kernel for the pool: a container of `image` nobody owns yet, its runner
        ready. It is no kernel of this node until `hand_out` makes it one."""
        pool_id = str(uuid.uuid4())
        req = CreateKernel("", pool_id, "", "", image, slots.to_wire())
        no_devices = Allocation(pool_id, {}, ContainerDevices())  # a warm kernel holds none

        def spec(kdir: Path) -> ContainerSpec:
            spec = self._spec(req, kdir, slots, no_devices)
            return dataclasses.replace(
                spec, labels={LABEL_POOL: pool_id, LABEL_NODE: self._config.node_id}
            )

        kernel = await self._launch(pool_id, "", spec)
        self._expected_exits.discard(pool_id)
        return kernel

    async def hand_out(self, warm: Kernel, req: CreateKernel) -> str:
        """Make a warm kernel the kernel of `req`: its limits, then who it belongs to. NodeError
        when it cannot be used (it stopped meanwhile): the caller discards it."""
        slots = requested(req)
        with trio.move_on_after(HAND_OUT_PING):
            alive = await ping(warm.runner)
        if not alive:
            raise NodeError(f"warm kernel {warm.container_id[:12]} does not answer")
        cpu, mem = int(slots["cpu"] * 1_000_000_000), int(slots["mem"])
        limits = Limits(cpu, mem, self._config.pids_limit)
        if (warm.nano_cpus, warm.mem_limit) != (limits.nano_cpus, limits.mem_limit):
            # a session asking for what warm kernels are made with (the default resources,
            # most of them) saves the engine's round trip
            await self._runtime.update(warm.container_id, limits)
        claim = Claim(warm.kernel_id, req.kernel_id, req.session_id, req.owner_access_key)
        await trio.to_thread.run_sync(_write_claim, warm.dir, claim)
        for sockets in (self._sockets, self._relays):
            sockets[req.kernel_id] = sockets.pop(warm.kernel_id)
        self._claims[req.kernel_id] = claim
        kernel = dataclasses.replace(
            warm,
            kernel_id=req.kernel_id,
            session_id=req.session_id,
            mem_limit=limits.mem_limit,
            nano_cpus=limits.nano_cpus,
        )
        self._known[req.kernel_id] = kernel
        return kernel.container_id

    async def discard(self, warm: Kernel) -> None:
        """Remove a warm kernel that was not handed out (drained, stale or stopped)."""
        with trio.CancelScope(shield=True):
            try:
                await self._runtime.remove(warm.container_id)
            except NodeError as exc:
                log.warning("could not remove warm kernel %s: %s", warm.container_id[:12], exc)
            await self._remove_dir(warm.kernel_id, warm.dir)

    async def discard_leftovers(self) -> None:
        """Remove the warm kernels a previous run of this node left without handing them out."""
        claims = await trio.to_thread.run_sync(self._read_claims)
        for state in await self._runtime.containers({LABEL_NODE: self._config.node_id}):
            pool_id = state.labels.get(LABEL_POOL)
            if pool_id and pool_id not in claims:
                await self._runtime.remove(state.id)
                await self._remove_dir(pool_id, self._dir(pool_id))

    def _read_claims(self) -> dict[str, Claim]:
        """Every CLAIM file under the kernels' folders, by pool id."""
        claims = {}
        for path in (self._config.state_dir / hostfs.KERNELS_DIR).glob(f"*/{CLAIM}"):
            try:
                claim = Claim(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("unreadable %s: %s", path, exc)
                continue
            claims[claim.pool_id] = claim
        return claims

    def held(self) -> Slots:
        """What this node's kernels hold (cpu and mem limits), for the pool's capacity check."""
        total = Slots()
        for kernel in self._known.values():
            cpu = (kernel.nano_cpus or 0) / Decimal(1_000_000_000)
            total = total + Slots({"cpu": cpu, "mem": kernel.mem_limit or 0})
        return total

    def kernel_of(self, container_id: str) -> str | None:
        """The kernel id of one of this node's containers, for events without a kernel label."""
        for kernel in self._known.values():
            if kernel.container_id == container_id:
                return kernel.kernel_id
        return None

    async def _launch(
        self, kernel_id: str, session_id: str, build: Callable[[Path], ContainerSpec]
    ) -> Kernel:
        kdir = self._dir(kernel_id)
        try:
            await self._make_dir(kdir)
        except FileExistsError:
            await self._clear_leftover(kernel_id, kdir)
            await self._make_dir(kdir)
        self._expected_exits.add(kernel_id)  # dying while starting is reported in the Reply
        created: list[str] = []  # the container once the engine made it, for the cleanup
        try:
            runner = self._socket(kernel_id, kdir)
            spec = build(kdir)
            limits = _small_share(spec)
            try:
                async with trio.open_nursery() as nursery:
                    # the work filesystem is made while the engine creates the container,
                    # which needs only its folder until it starts
                    nursery.start_soon(self._make_work_fs, kdir)
                    starting = dataclasses.replace(spec, nano_cpus=START_NANO_CPUS)
                    await self._create(starting if limits else spec, created)
            except ExceptionGroup as group:  # if both failed, the first says enough
                raise group.exceptions[0] from None
            [container_id] = created
            # its init process (for statistics) is looked up by `find_pids`, off the start
            kernel = Kernel(
                kernel_id, session_id, container_id, kdir, spec.mem_limit, runner, None,
                spec.nano_cpus,
            )  # fmt: skip
            with self._watching(container_id):  # from before the start: it may stop at once
                await self._runtime.start(container_id)
                await self._wait_ready(kernel, START_NANO_CPUS if limits else spec.nano_cpus)
            if limits:
                await self._runtime.update(container_id, limits)
        except BaseException:
            with trio.CancelScope(shield=True):
                for container_id in created:
                    try:
                        await self._runtime.remove(container_id)
                    except NodeError as exc:
                        log.warning("could not remove failed kernel %s: %s", kernel_id, exc)
                await self._remove_dir(kernel_id, kdir)
            raise
        self._expected_exits.discard(kernel_id)
        return kernel

    async def _create(self, spec: ContainerSpec, created: list[str]) -> None:
        # shielded: the id of a container whose create was cancelled midway would be lost, and
        # the container never removed
        with trio.CancelScope(shield=True):
            try:
                created.append(await self._runtime.create(spec))
            except ImageNotFound as exc:
                raise ImageNotFound(
                    f"image {spec.image} not found on node {self._config.node_id}"
                ) from exc

    async def _make_dir(self, kdir: Path) -> None:
        """The kernel's folder, without its work filesystem (`_make_work_fs`)."""
        config = self._config
        try:
            await trio.to_thread.run_sync(
                functools.partial(
                    hostfs.make_kernel_dir, kdir, config.kernel_uid, work_quota=config.work_quota
                )
            )
        except FileExistsError:
            raise
        except OSError as exc:
            reason = exc.strerror or exc
            raise NodeError(f"cannot create the kernel folder {kdir}: {reason}") from exc

    async def _make_work_fs(self, kdir: Path) -> None:
        config = self._config
        if not config.work_quota:
            return
        try:
            await trio.to_thread.run_sync(
                hostfs.make_work_fs, kdir, config.kernel_uid, config.work_size_bytes,
                config.disk_reserve_bytes, limiter=self._disk,
            )  # fmt: skip
        except OSError as exc:
            reason = exc.strerror or exc
            raise NodeError(f"cannot create the kernel folder {kdir}: {reason}") from exc

    async def _remove_dir(self, kernel_id: str, kdir: Path) -> None:
        for sockets in (self._sockets, self._relays):
            runner = sockets.pop(kernel_id, None)
            if runner is not None:
                runner.close()
        try:
            await trio.to_thread.run_sync(hostfs.remove_kernel_dir, kdir)
        except OSError as exc:
            log.warning("could not remove the folder of kernel %s: %s", kernel_id, exc)

    async def _clear_leftover(self, kernel_id: str, kdir: Path) -> None:
        """A folder without a container is left from a crash: remove it. With one: refuse."""
        if kernel_id in self._known or await self._runtime.containers(self._labels(kernel_id)):
            raise NodeError(f"kernel {kernel_id} already exists on node {self._config.node_id}")
        await self._remove_dir(kernel_id, kdir)

    def _spec(
        self, req: CreateKernel, kdir: Path, slots: Slots, allocation: Allocation
    ) -> ContainerSpec:
        config = self._config
        uid = config.kernel_uid
        cpu, mem = slots["cpu"], slots["mem"]
        devices = allocation.container
        labels = {
            LABEL_KERNEL: req.kernel_id,
            LABEL_SESSION: req.session_id,
            LABEL_OWNER: req.owner_access_key,
            LABEL_NODE: config.node_id,
        }
        if allocation.shares:
            labels[LABEL_DEVICES] = allocation.label_value()
        return ContainerSpec(
            name=f"shipyard-{short_id(req.kernel_id)}",
            image=req.image,
            command=["python3", "/opt/shipyard/runner.py", RUNNER_SOCKET],
            labels=labels,
            user=f"{uid}:{uid}",
            # the devices' variables last: a session cannot widen what it sees
            environment={**req.environ, "HOME": "/home/work", **devices.environment},
            working_dir="/home/work",
            binds=[
                Bind(config.state_dir / hostfs.RUNNER_DIR, "/opt/shipyard", read_only=True),
                Bind(kdir / hostfs.SOCKET_DIR, SOCKET_MOUNT, read_only=True),
                Bind(kdir / hostfs.WORK_DIR, "/home/work"),
                Bind(kdir / hostfs.PASSWD, "/etc/passwd", read_only=True),
                Bind(kdir / hostfs.GROUP, "/etc/group", read_only=True),
                *vfolders.binds(config.vfolder_roots, req.mounts, kdir),
            ],
            scratch={"/tmp": config.tmp_size_bytes},
            network_mode=config.network_mode,
            nano_cpus=int(cpu * 1_000_000_000),
            mem_limit=int(mem),
            pids_limit=config.pids_limit,
            device_requests=list(devices.device_requests),
            devices=list(devices.devices),
            group_add=list(devices.group_add),
        )

    async def _wait_ready(self, kernel: Kernel, nano_cpus: int | None) -> None:
        """Until the kernel's runner, started with `nano_cpus`, answers a ping. No engine call
        is made while it starts (in a burst each would queue behind the other kernels' creates
        and starts): its container stopping is told by the engine's event, and the engine is
        asked only then, or when the time is up, whether it still runs."""
        timeout = ready_timeout(nano_cpus)
        deadline = trio.current_time() + timeout
        while True:
            scope = self._starting[kernel.container_id]
            scope.deadline = deadline
            with scope:
                while not await ping(kernel.runner):
                    pass  # its connection broke: a runner that lives dials again
                return
            # stopped, or out of time; a "die" event may also be the stop of a restart
            self._starting[kernel.container_id] = trio.CancelScope()
            state = await self._runtime.inspect(kernel.container_id)
            if not state.running:
                raise KernelStartFailed(await self._start_failure(kernel, state))
            if trio.current_time() >= deadline:
                raise KernelStartFailed(
                    f"kernel {kernel.kernel_id} did not become ready within {timeout:g} s"
                )

    async def _start_failure(self, kernel: Kernel, state: ContainerState) -> str:
        try:
            tail = (await self._runtime.logs(kernel.container_id, tail=20)).strip()
        except NodeError:
            tail = ""
        message = f"kernel {kernel.kernel_id} stopped while starting ({describe_exit(state)})"
        return f"{message}; its last output:\n{tail}" if tail else message

    async def destroy(self, kernel_id: str) -> int | None:
        """Remove the kernel's container and folder; the exit code if it had already stopped."""
        self._expected_exits.add(kernel_id)
        try:
            kdir = self._dir(kernel_id)
        except NodeError:
            return None  # not an id this node could have created
        exit_code = None
        with trio.CancelScope(shield=True):
            for state in await self._containers_of(kernel_id):
                await self._runtime.remove(state.id)
                if not state.running:
                    exit_code = state.exit_code
            self._known.pop(kernel_id, None)
            self._accelerators.allocator.release(kernel_id)
            await self._remove_dir(kernel_id, kdir)
            self._claims.pop(kernel_id, None)
        return exit_code

    async def _containers_of(self, kernel_id: str) -> list[ContainerState]:
        """The kernel's container: by its id when known (one engine call; a listing by label
        costs more, the more containers the engine has), else found by its labels."""
        known = self._known.get(kernel_id)
        if known is None:
            return await self._runtime.containers(self._labels(kernel_id))
        try:
            return [await self._runtime.inspect(known.container_id)]
        except ContainerNotFound:
            return []

    def release_devices(self, kernel_id: str) -> None:
        """The kernel stopped: its accelerator devices are free for others (unless it stopped
        to be restarted in place, keeping them)."""
        if kernel_id not in self._restarting:
            self._accelerators.allocator.release(kernel_id)

    async def restart(self, kernel_id: str) -> None:
        """Restart the kernel's container in place and wait until its runner answers."""
        kernel = await self.get(kernel_id)
        self._restarting.add(kernel_id)
        with self._watching(kernel.container_id):
            try:
                await self._runtime.restart(kernel.container_id)
            except BaseException:
                self._restarting.discard(kernel_id)
                raise
            self._known[kernel_id] = dataclasses.replace(kernel, pid=None)  # a new init process
            await self._wait_ready(kernel, kernel.nano_cpus)  # it keeps its own share

    async def find_pids(self) -> None:
        """Look up the init process of the kernels started since the last call (before each
        statistics sample): one engine call fewer on every kernel's start."""
        for kernel in [k for k in self._known.values() if k.pid is None]:
            try:
                pid = (await self._runtime.inspect(kernel.container_id)).pid
            except NodeError:
                continue  # gone meanwhile: its destroy or exit is on its way
            if pid is not None and self._known.get(kernel.kernel_id) is kernel:
                self._known[kernel.kernel_id] = dataclasses.replace(kernel, pid=pid)

    def tracked(self) -> list[Tracked]:
        """The running kernels this node knows, for the statistics sampler."""
        held = self._accelerators.allocator.held
        return [
            Tracked(k.kernel_id, k.pid, {p: list(d) for p, d in held(k.kernel_id).items()})
            for k in self._known.values()
            if k.pid is not None
        ]

    @asynccontextmanager
    async def connect(self, kernel: Kernel) -> AsyncIterator[RunnerConnection]:
        """The next connection from the kernel's runner, once it is free; OSError (one of
        RUNNER_GONE) if the container stops or goes away meanwhile, since then nobody will dial."""
        while True:
            with trio.move_on_after(BUSY_POLL):
                stream = await kernel.runner.accept()
                break
            try:
                running = (await self._runtime.inspect(kernel.container_id)).running
            except ContainerNotFound:
                running = False
            if not running:
                raise OSError(f"kernel {kernel.kernel_id} is not running")
        async with stream:
            yield RunnerConnection(stream)

    async def logs(self, kernel_id: str) -> str:
        """The container's output; only the newest LOGS_LIMIT characters of a long one."""
        kernel = await self.get(kernel_id)
        try:
            text = await self._runtime.logs(kernel.container_id)
            if len(text) > LOGS_LIMIT:
                omitted = len(text) - LOGS_LIMIT
                text = f"[{omitted} earlier characters omitted]\n" + text[-LOGS_LIMIT:]
            return text
        except ContainerNotFound as exc:
            self._known.pop(kernel_id, None)
            raise KernelNotFound(
                f"kernel {kernel_id} is gone from node {self._config.node_id}"
            ) from exc

    async def upload(self, kernel_id: str, files: list[UploadFile]) -> list[str]:
        checked = hostfs.check_upload([(f.path, f.data_b64) for f in files])
        kernel = await self.get(kernel_id)
        uid = self._config.kernel_uid

        def write_all() -> None:
            for path, data in checked:
                hostfs.write_upload(kernel.work, path, data, uid)

        await trio.to_thread.run_sync(write_all)
        return [f.path for f in files]

    async def list_files(self, kernel_id: str, path: str) -> list[FileEntry]:
        kernel = await self.get(kernel_id)
        return await trio.to_thread.run_sync(workfiles.list_folder, kernel.work, path)

    async def download(self, kernel_id: str, paths: list[str], max_bytes: int) -> list[bytes]:
        kernel = await self.get(kernel_id)

        def archive_all() -> list[bytes]:
            return [workfiles.archive(kernel.work, path, max_bytes) for path in paths]

        return await trio.to_thread.run_sync(archive_all)

    async def complete(self, kernel_id: str, code: str) -> list[str]:
        """The runner's completions for the last word of `code`; none when it does not answer
        within COMPLETE_WAIT (busy with a run)."""
        kernel = await self.get(kernel_id)
        with trio.move_on_after(COMPLETE_WAIT), contextlib.suppress(*RUNNER_GONE):
            async with self.connect(kernel) as conn:
                await conn.send({"op": "complete", "code": code})
                while (event := await conn.receive()) is not None:
                    items = event.get("items")
                    if event.get("kind") == "completions" and isinstance(items, list):
                        return [i for i in items if isinstance(i, str)][:MAX_COMPLETIONS]
        return []

    async def interrupt(self, kernel_id: str) -> None:
        kernel = await self.get(kernel_id)
        await self._runtime.interrupt(kernel.container_id)


# The smallest limits the engine enforces: below 0.01 CPU docker's NanoCpus give no quota at
# all, and no container starts in less memory. The control plane refuses such requests; the
# node does not trust that it did.
MIN_CPU = Decimal("0.01")
COMPLETE_WAIT = 2.0  # seconds; a runner busy with a run offers no completions
MAX_COMPLETIONS = 100
MIN_MEM = 6 * 2**20


HAND_OUT_PING = 1.0  # seconds a warm kernel's runner has to answer before it is handed out


def _small_share(spec: ContainerSpec) -> Limits | None:
    """The container's own limits when its CPU share is below START_NANO_CPUS (it then starts
    with that many), else None."""
    if spec.nano_cpus is None or spec.nano_cpus >= START_NANO_CPUS:
        return None
    assert spec.mem_limit is not None and spec.pids_limit is not None  # `_spec` sets both
    return Limits(spec.nano_cpus, spec.mem_limit, spec.pids_limit)


def ready_timeout(nano_cpus: int | None) -> float:
    """Seconds a kernel with this CPU limit (None: none) has for its runner to answer."""
    share = min(nano_cpus / 1_000_000_000, 1.0) if nano_cpus else 1.0
    return min(READY_TIMEOUT / share, READY_TIMEOUT_MAX)


def requested(req: CreateKernel) -> Slots:
    """The slots a create asks for, checked (NodeError saying what is wrong)."""
    try:
        slots = Slots.from_wire(req.slots)
    except SlotsError as exc:
        raise NodeError(f"cannot create kernel {req.kernel_id}: {exc}") from exc
    _check_limits(req.kernel_id, slots)
    return slots


def _write_claim(kdir: Path, claim: Claim) -> None:
    """The claim, written whole or not at all, readable by root only."""
    tmp = kdir / f".{CLAIM}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(dataclasses.asdict(claim), out)
    os.replace(tmp, kdir / CLAIM)


def _check_limits(kernel_id: str, slots: Slots) -> None:
    if not slots["cpu"] >= MIN_CPU:
        raise NodeError(f"cannot create kernel {kernel_id}: cpu {slots['cpu']} is below {MIN_CPU}")
    if not slots["mem"] >= MIN_MEM:
        raise NodeError(f"cannot create kernel {kernel_id}: mem {slots['mem']} is below 6 MiB")
