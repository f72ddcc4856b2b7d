"""Warm kernels: started, never-used containers a session gets at once instead of a new one.

Starting a kernel is mostly the engine's work (create, start, the runner's interpreter starting,
its work filesystem): hundreds of milliseconds that a session need not wait for when the node did
it beforehand. The pool keeps `warm_pool` such kernels for each image of `warm_pool_images`, made
with the control plane's default session resources and no owner (labels: the node and a pool id,
nothing else). `create` hands one out when the request allows it: the engine's limits are set to
the session's, the claim (kernel, session, owner) is written to a root-only file in its folder,
and it is then a kernel like any other. A handed-out kernel never goes back: when its session ends
it is removed, and the pool makes a fresh one, so nothing a session did can reach another.

Capacity: a warm kernel holds no slots the control plane sees, so the pool only ever fills what
the node's kernels leave free (their limits plus the pool's within the node's capacity), and gives
warm kernels up whenever a new kernel would otherwise not fit beside them.

One task (`run`, in the node's root nursery) fills the pool; it is woken by every hand-out,
destroy, stopped warm kernel and image change, and removes what the pool holds when cancelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from node.config import NodeConfig
from node.errors import NodeError
from node.kernels import Kernel, Kernels, requested
from node.resources import capacity
from wire import CreateKernel, ImageInfo, Slots

log = logging.getLogger("shipyard.node.pool")

# the control plane's default session resources (controlplane/sessions.py DEFAULT_RESOURCES):
# what a warm kernel is made with, and holds of the node's capacity while it waits
WARM_SLOTS = Slots({"cpu": "1", "mem": "1g"})
RETRY_FIRST, RETRY_MAX = 2.0, 60.0  # seconds between attempts after a failed warm-up
DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class _Warm:
    kernel: Kernel
    image: str
    digest: str  # the image's id when it was made: another id means the image changed


class Pool:
    def __init__(self, config: NodeConfig, kernels: Kernels) -> None:
        self._size = config.warm_pool
        self._images = list(dict.fromkeys(config.warm_pool_images))
        self._kernels = kernels
        self._capacity = Slots.from_wire(capacity(config))
        self._warm: list[_Warm] = []
        self._doomed: list[Kernel] = []  # taken out of the pool, to be removed by `run`
        self._digests: dict[str, str] = {}  # image name -> id, as the node last reported them
        self._wake = trio.Event()
        self._starting = Slots()  # what creates in progress ask for

    def wake(self) -> None:
        """Something changed (capacity freed, a warm kernel used or lost): fill again."""
        self._wake.set()

    def __len__(self) -> int:
        return len(self._warm)

    def images_seen(self, images: list[ImageInfo]) -> None:
        """The node's images now: warm kernels of an image that changed or went are removed."""
        self._digests = {image.name: image.digest for image in images}
        stale = [w for w in self._warm if self._digests.get(w.image) != w.digest]
        self._doom(stale)

    def lost(self, container_id: str) -> None:
        """A warm kernel's container stopped: it is useless now."""
        self._doom([w for w in self._warm if w.kernel.container_id == container_id])

    def _doom(self, warm: list[_Warm]) -> None:
        for w in warm:
            self._warm.remove(w)
            self._doomed.append(w.kernel)
        self.wake()

    def _poolable(self, req: CreateKernel, slots: Slots) -> bool:
        """Whether a warm kernel can be this request's: same image, and nothing fixed at
        container creation differs (environment, mounts, accelerator devices)."""
        devices = set(slots) - {"cpu", "mem"}
        return req.image in self._images and not (req.environ or req.mounts or devices)

    async def create(self, req: CreateKernel) -> str:
        """The kernel for `req`, from the pool when one fits, else a new one; its container id."""
        slots = requested(req)
        # held from now on: a kernel being made is in no one's count until it is made
        self._starting = self._starting + slots
        counted = True
        try:
            if self._poolable(req, slots):
                while warm := next((w for w in self._warm if w.image == req.image), None):
                    self._warm.remove(warm)  # no await before: nobody else can take it
                    try:
                        container_id = await self._kernels.hand_out(warm.kernel, req)
                    except NodeError as exc:
                        log.warning("a warm kernel could not be used (%s); removing it", exc)
                        await self._kernels.discard(warm.kernel)
                        continue
                    except BaseException:
                        await self._kernels.discard(warm.kernel)
                        raise
                    # the kernel's own count holds it now; a warm kernel given up for it
                    # would only delay the answer
                    self._starting, counted = self._starting - slots, False
                    await self._make_room()
                    return container_id
            await self._make_room()
            return await self._kernels.create(req)
        finally:
            if counted:
                self._starting = self._starting - slots
            self.wake()

    def _fits(self, warm: int) -> bool:
        total = self._kernels.held() + self._starting
        for _ in range(warm):
            total = total + WARM_SLOTS
        return all(total[slot] <= self._capacity[slot] for slot in ("cpu", "mem"))

    async def _make_room(self) -> None:
        """Give up warm kernels until the node's kernels, those starting and the pool fit."""
        while self._warm and not self._fits(len(self._warm)):
            warm = self._warm.pop()
            await self._kernels.discard(warm.kernel)

    async def run(self) -> None:
        """Keep the pool filled until cancelled; then remove every warm kernel it holds."""
        if not self._size or not self._images:
            return
        delay = RETRY_FIRST
        leftovers = True  # a previous run of the node may have left warm kernels
        try:
            while True:
                self._wake = trio.Event()
                while self._doomed:
                    await self._kernels.discard(self._doomed.pop())
                try:
                    if leftovers:
                        await self._kernels.discard_leftovers()
                        leftovers = False
                    made = await self._fill_one()
                except NodeError as exc:
                    log.warning("could not prepare a warm kernel: %s; again in %.0f s", exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                delay = RETRY_FIRST
                if not made:
                    await self._wake.wait()
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + DRAIN_TIMEOUT
                for kernel in [*self._doomed, *(w.kernel for w in self._warm)]:
                    await self._kernels.discard(kernel)
                self._warm.clear()
                self._doomed.clear()

    async def _fill_one(self) -> bool:
        """Make one warm kernel where one is missing and fits; False when none is."""
        for image in self._images:
            digest = self._digests.get(image)
            have = sum(1 for w in self._warm if w.image == image)
            if digest is None or have >= self._size or not self._fits(len(self._warm) + 1):
                continue
            kernel = await self._kernels.warm(image, WARM_SLOTS)
            if self._digests.get(image) != digest or not self._fits(len(self._warm) + 1):
                await self._kernels.discard(kernel)  # the image or the room changed meanwhile
                return True
            self._warm.append(_Warm(kernel, image, digest))
            log.info("warm kernel %s of %s ready", kernel.container_id[:12], image)
            return True
        return False
