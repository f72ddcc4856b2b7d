"""Fixtures for node tests: a fake control plane, a node agent serving against it, real Docker.

Every test gets its own node id; teardown removes every container labelled with it, by id.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import trio

from node import NodeConfig
from node.hostfs import remove_kernel_dirs
from node.testing import FakeControlPlane, NodeProcess
from wire import CreateKernel

TOKEN = "test-node-token"
OWNER = "AKIATESTOWNER"
NewKernel = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine here: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def kernel_image(docker_client: docker.DockerClient) -> str:
    from kernelimages import FIXTURE_IMAGE, build_image, image_exists

    if not image_exists(FIXTURE_IMAGE, current=True):
        build_image("python-host", log=lambda *_: None)
    return FIXTURE_IMAGE


@pytest.fixture
def node_id(docker_client: docker.DockerClient) -> Iterator[str]:
    node_id = f"i-test-{uuid.uuid4().hex[:10]}"
    yield node_id
    label = f"ai.shipyard.node-id={node_id}"
    for container in docker_client.containers.list(all=True, filters={"label": label}):
        docker_client.api.remove_container(container.id, force=True)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # short: the runner's socket path must stay under 107 bytes
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="sy"))
    yield path
    remove_kernel_dirs(path)  # those a test left (their containers are gone by now) are mounted
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def control_plane(nursery: trio.Nursery) -> FakeControlPlane:
    cp = FakeControlPlane(TOKEN)
    await nursery.start(cp.serve)
    return cp


@pytest.fixture
def node_config(state_dir: Path, control_plane: FakeControlPlane, node_id: str) -> NodeConfig:
    return NodeConfig(
        state_dir=state_dir,
        controlplane_url=control_plane.url,
        node_token=TOKEN,
        node_id=node_id,
        heartbeat_interval=0.2,
        warm_pool=0,  # tests/node/test_pool.py turns it on
    )


@pytest.fixture
async def node(
    nursery: trio.Nursery, node_config: NodeConfig, control_plane: FakeControlPlane
) -> AsyncIterator[NodeProcess]:
    process = NodeProcess(nursery, node_config)
    await process.start()
    await control_plane.registration()
    yield process
    await process.stop()


@pytest.fixture
def new_kernel(control_plane: FakeControlPlane, kernel_image: str) -> NewKernel:
    """Create a kernel through the control plane and return its id (asserts it worked)."""

    async def create(
        *, mem: str = "256m", cpu: str = "1", environ: dict[str, str] | None = None
    ) -> str:
        kernel_id = str(uuid.uuid4())
        reply = await control_plane.request(
            lambda req_id: CreateKernel(
                req_id,
                kernel_id,
                session_id=str(uuid.uuid4()),
                owner_access_key=OWNER,
                image=kernel_image,
                slots={"cpu": cpu, "mem": mem},
                environ=environ or {},
            )
        )
        assert reply.ok, reply.error
        return kernel_id

    return create
