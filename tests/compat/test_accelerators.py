"""Accelerator slots through the official client: `backend.ai run -r cuda.device=1` on a node
with two mock GPUs gets one, visible inside; `admin agent list` shows the node's GPU slots."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.testing import Appliance, running_appliance
from tests.compat.conftest import BackendAI
from tests.e2e.test_accelerators import write_mock_devices

pytestmark = pytest.mark.docker

SMALL = ("-r", "cpu=0.25", "-r", "mem=256m")


@pytest.fixture(scope="module")
def gpu_appliance(bai_executable: Path) -> Iterator[Appliance]:
    with tempfile.TemporaryDirectory(prefix="sy-mock-") as tmp:
        devices = write_mock_devices(Path(tmp) / "mock-devices.toml", 2)
        with running_appliance(["--mock-devices", str(devices)]) as appliance:
            yield appliance


@pytest.fixture
def gpu_bai(bai_executable: Path, gpu_appliance: Appliance, tmp_path: Path) -> BackendAI:
    return BackendAI(bai_executable, gpu_appliance, tmp_path)


def test_run_with_one_cuda_device_sees_one_mock_gpu(gpu_bai: BackendAI) -> None:
    env = "os.environ['SHIPYARD_MOCK_DEVICES'], os.environ['CUDA_VISIBLE_DEVICES']"
    code = f"import os; print({env})"
    result = gpu_bai("run", "--rm", "-r", "cuda.device=1", *SMALL, "python", "-c", code)
    assert result.returncode == 0, result.stdout + result.stderr
    device, ordinal = result.stdout.split()
    assert device in ("mock-gpu0", "mock-gpu1")
    assert ordinal == "0"


def test_a_request_beyond_every_node_is_refused(gpu_bai: BackendAI) -> None:
    result = gpu_bai("run", "--rm", "-r", "cuda.device=3", *SMALL, "python", "-c", "1")
    # (the client prints the error and exits 0 all the same)
    assert "no node can ever provide" in result.stdout + result.stderr


def test_agent_list_shows_the_gpu_slots(gpu_bai: BackendAI) -> None:
    listed = gpu_bai.json("admin", "agent", "list")
    (agent,) = listed["items"]
    assert agent["available_slots"]["cuda.device"] == "2"
    assert agent["occupied_slots"]["cuda.device"] == "0"
