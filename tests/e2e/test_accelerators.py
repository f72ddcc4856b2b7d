"""Accelerators end to end (issue 10 item 2): a node with four mock GPUs registers them as
`cuda.device` slots, sessions asking for them get distinct devices visible inside their
containers, a request that does not fit waits saying why, and runs once a holder ends."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.testing import Appliance, running_appliance, wait_for

pytestmark = pytest.mark.docker

GPUS = ("-r", "cuda.device=2", "-r", "cpu=0.25", "-r", "mem=128m")  # the test machine is small
SHOW = "import os; print(os.environ['SHIPYARD_MOCK_DEVICES'], os.environ['CUDA_VISIBLE_DEVICES'])"


def write_mock_devices(path: Path, count: int, prefix: str = "mock-gpu") -> Path:
    path.write_text(
        "".join(f'[[devices]]\nid = "{prefix}{i}"\nmemory = "8g"\n' for i in range(count))
    )
    return path


@pytest.fixture(scope="module")
def gpu_appliance(test_image: str) -> Iterator[Appliance]:
    with tempfile.TemporaryDirectory(prefix="sy-mock-") as tmp:
        devices = write_mock_devices(Path(tmp) / "mock-devices.toml", 4)
        with running_appliance(["--mock-devices", str(devices)]) as appliance:
            yield appliance


def _info(appliance: Appliance, name: str) -> dict[str, object]:
    result = appliance.cli("session", "info", name, "--json")
    assert result.returncode == 0, result.stderr
    info: dict[str, object] = json.loads(result.stdout)
    return info


def _visible(appliance: Appliance, name: str) -> tuple[set[str], str]:
    result = appliance.cli("session", "exec", name, "-c", SHOW)
    assert result.returncode == 0, result.stderr
    ids, ordinals = result.stdout.split()
    return set(ids.split(",")), ordinals


def test_the_node_offers_its_mock_gpus_as_slots(gpu_appliance: Appliance) -> None:
    result = gpu_appliance.cli("admin", "node", "ls", "--json")
    assert result.returncode == 0, result.stderr
    (node,) = json.loads(result.stdout)["items"]
    assert node["availableSlots"]["cuda.device"] == "4"
    assert sorted(d["id"] for d in node["devices"]) == [f"mock-gpu{i}" for i in range(4)]


def test_cuda_devices_are_distinct_visible_and_a_third_request_waits(
    gpu_appliance: Appliance,
) -> None:
    app = gpu_appliance
    for name in ("gpu-a", "gpu-b"):
        created = app.cli("session", "create", "-n", name, *GPUS)
        assert created.returncode == 0, created.stderr
    seen_a, ordinals_a = _visible(app, "gpu-a")
    seen_b, ordinals_b = _visible(app, "gpu-b")
    assert len(seen_a) == len(seen_b) == 2
    assert not seen_a & seen_b
    assert seen_a | seen_b == {f"mock-gpu{i}" for i in range(4)}
    assert ordinals_a == ordinals_b == "0,1"  # the container sees its own devices only

    waiting = app.cli("session", "create", "-n", "gpu-c", *GPUS, "--enqueue-only")
    assert waiting.returncode == 0, waiting.stderr
    wait_for(lambda: "cuda.device" in str(_info(app, "gpu-c").get("statusInfo")), "a reason")
    info = _info(app, "gpu-c")
    assert info["status"] == "PENDING"
    assert "(short of cuda.device)" in str(info["statusInfo"])

    assert app.cli("session", "rm", "gpu-a").returncode == 0
    wait_for(lambda: _info(app, "gpu-c")["status"] == "RUNNING", "gpu-c to start", 60)
    seen_c, _ = _visible(app, "gpu-c")
    assert seen_c == seen_a  # the devices gpu-a gave back
    for name in ("gpu-b", "gpu-c"):
        assert app.cli("session", "rm", name).returncode == 0


def test_a_request_no_node_can_meet_is_refused(gpu_appliance: Appliance) -> None:
    result = gpu_appliance.cli("session", "create", "-n", "gpu-x", "-r", "cuda.device=5")
    assert result.returncode != 0
    assert "no node can ever provide" in result.stderr
    result = gpu_appliance.cli("session", "create", "-n", "gpu-y", "-r", "rocm.device=1")
    assert result.returncode != 0
    assert "no node can ever provide" in result.stderr
