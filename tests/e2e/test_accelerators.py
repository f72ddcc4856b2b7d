"""Accelerators end to end (issue 10 item 2): a node with four mock GPUs registers them as
`cuda.device` slots, sessions asking for them get distinct devices visible inside their
containers, a request that does not fit waits saying why, and runs once a holder ends."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.testing import Appliance, running_appliance, wait_for
from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker

SMALL = ("-r", "cpu=0.25", "-r", "mem=128m")  # the test machine is small
GPUS = ("-r", "cuda.device=2", *SMALL)
# a busy loop holding 64 MiB, left running in the background of the session
BUSY = (
    "import subprocess, sys; subprocess.Popen([sys.executable, '-c',"
    " 'x = bytearray(64 * 2**20)\\nwhile True: x[0] = 1'], start_new_session=True,"
    " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"
)
SHOW = "import os; print(os.environ['SHIPYARD_MOCK_DEVICES'], os.environ['CUDA_VISIBLE_DEVICES'])"


def write_mock_devices(path: Path, count: int, prefix: str = "mock-gpu") -> Path:
    entry = '[[devices]]\nid = "{}"\nmemory = "8g"\nutil_pct = 40.0\nmem_used = "1g"\n'
    path.write_text("".join(entry.format(f"{prefix}{i}") for i in range(count)))
    return path


@pytest.fixture(scope="module")
def gpu_appliance(test_image: str) -> Iterator[Appliance]:
    with tempfile.TemporaryDirectory(prefix="sy-mock-") as tmp:
        devices = write_mock_devices(Path(tmp) / "mock-devices.toml", 4)
        with running_appliance(
            ["--mock-devices", str(devices)], node={"heartbeat_interval": 1.0}
        ) as appliance:
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

    def device_util() -> Any:
        listed = json.loads(gpu_appliance.cli("admin", "node", "ls", "--json").stdout)
        live = listed["items"][0]["liveStat"]
        return live and live["devices"]["mock:mock-gpu3"]["cuda_util"]["current"]

    wait_for(device_util, "the node's statistics")
    assert device_util() == "40.0"


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


def _busy_stats(appliance: Appliance, name: str) -> dict[str, Any] | None:
    stat: dict[str, Any] | None = _info(appliance, name).get("lastStat")  # type: ignore[assignment]
    if stat and float(stat["cpu_util"]["current"]) > 5 and int(stat["mem"]["current"]) > 2**26:
        return stat
    return None


def test_live_statistics_of_a_busy_session_in_both_clis_and_kept_at_the_end(
    gpu_appliance: Appliance, tmp_path: Path
) -> None:
    app = gpu_appliance
    created = app.cli("session", "create", "-n", "busy-1", "-r", "cuda.device=1", *SMALL)
    assert created.returncode == 0, created.stderr
    assert app.cli("session", "exec", "busy-1", "-c", BUSY).returncode == 0
    wait_for(lambda: _busy_stats(app, "busy-1"), "a busy sample", 60)
    stat = _busy_stats(app, "busy-1")
    assert stat is not None
    assert stat["mem"]["capacity"] == str(128 * 2**20)  # its limit
    assert stat["cuda_util"]["current"] == "40.0"  # the mock device it holds
    assert stat["cuda_mem"]["capacity"] == str(8 * 2**30)

    shown = app.cli("session", "info", "busy-1", "--stats")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.split("stats:\n", 1)[1]
    assert "cpu_util:" in lines and "of 25.0" in lines  # percent of its cpu=0.25
    assert "mem:" in lines and "of 128 MiB" in lines
    assert "cuda_util: 40.0 %" in lines

    session_id = str(_info(app, "busy-1")["sessionId"])
    executable = os.environ.get("SHIPYARD_TEST_BAI")
    if executable:  # the official client prints the container's live_stat
        bai = BackendAI(Path(executable), app, tmp_path)
        result = bai("session", "info", session_id)
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"- cpu_util:\s+\{'current': '[0-9.]+'", result.stdout), result.stdout
        assert "(unavailable)" not in result.stdout  # neither live_stat nor last_stat

    assert app.cli("session", "rm", "busy-1").returncode == 0
    ended = app.cli("session", "info", session_id, "--stats")
    assert ended.returncode == 0, ended.stderr
    assert "cuda_util: 40.0 %" in ended.stdout  # the last sample stays with the session
