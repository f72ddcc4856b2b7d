"""Accelerator plugins against recorded data (we have no GPUs): NVIDIA through the recorded-values
pynvml stand-in, AMD through the sysfs stand-in files, the mock plugin from a TOML file; the
allocator; discovery through the installed entry points."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from node.accelerators import Accelerators, Allocator, DevicesUnavailable, installed
from node.accelerators.amd import AmdPlugin, gfx_name, parse_kfd_properties
from node.accelerators.mock import MockPlugin
from node.accelerators.nvidia import NvidiaPlugin
from node.config import NodeConfig
from node.errors import NodeError
from node.runtime import DeviceRequest, EngineInfo
from tests.installer.standin_pynvml import A100, MIG_A100, StandInNVML, missing_library

STANDIN_HW = Path(__file__).parent.parent / "installer/standin_hw"
NVIDIA_ENGINE = EngineInfo(runtimes=frozenset({"runc", "nvidia"}))
PLAIN_ENGINE = EngineInfo(runtimes=frozenset({"runc"}))
GiB = 2**30


def _config(tmp_path: Path, **changes: object) -> NodeConfig:
    config = NodeConfig(state_dir=tmp_path, controlplane_url="http://127.0.0.1:1", node_token="t")
    return dataclasses.replace(config, **changes)


def _mock_file(tmp_path: Path, count: int = 4, slot: str = "cuda.device") -> Path:
    path = tmp_path / "mock-devices.toml"
    lines = [f'slot = "{slot}"']
    for i in range(count):
        lines += ["[[devices]]", f'id = "mock-gpu{i}"', 'memory = "8g"', f"util_pct = {10.0 * i}"]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- NVIDIA (recorded values) ---------------------------------------------------------------


def test_nvidia_inventory_versions_and_samples(tmp_path: Path) -> None:
    nvml = StandInNVML(gpus=list(A100))
    plugin = NvidiaPlugin.open(_config(tmp_path), NVIDIA_ENGINE, nvml)
    assert nvml.initialized  # one handle, held open for the node's lifetime
    assert plugin.metadata() == {"driver": "550.54.15", "cuda": "12.4"}
    first, second = plugin.devices()
    assert first.id == first.uuid == "GPU-11111111-2222-3333-4444-555555555555"
    assert (first.model, first.memory_bytes, first.bus_id) == (
        "NVIDIA A100-SXM4-80GB", 80 * GiB, "0000:07:00.0",
    )  # fmt: skip
    assert second.bus_id == "0000:0f:00.0" and not second.mig
    util, idle = plugin.sample()
    assert (util.util_pct, util.mem_used, util.mem_total) == (35.0, 3 * GiB, 80 * GiB)
    assert idle.util_pct == 0.0
    plugin.close()
    assert nvml.shutdowns == 1 and not nvml.initialized


def test_nvidia_mig_instances_replace_their_gpu(tmp_path: Path) -> None:
    plugin = NvidiaPlugin.open(_config(tmp_path), NVIDIA_ENGINE, StandInNVML(gpus=list(MIG_A100)))
    whole, mig1, mig2 = plugin.devices()
    assert not whole.mig and mig1.mig and mig2.mig
    assert mig1.id.startswith("MIG-aaaa") and mig1.memory_bytes == 40 * GiB
    assert mig1.bus_id == mig2.bus_id == "0000:0f:00.0"  # the GPU they are carved from
    samples = {s.device_id: s for s in plugin.sample()}
    assert samples[mig1.id].util_pct is None  # NVML has no utilization counter for MIG
    assert samples[mig1.id].mem_used == GiB


def test_nvidia_allocation_by_runtime_and_by_cdi(tmp_path: Path) -> None:
    plugin = NvidiaPlugin.open(_config(tmp_path), NVIDIA_ENGINE, StandInNVML(gpus=list(A100)))
    second = plugin.devices()[1]
    given = plugin.container_devices([second])
    assert given.device_requests == (DeviceRequest("nvidia", (second.id,), (("gpu",),)),)
    assert given.environment["NVIDIA_VISIBLE_DEVICES"] == second.id
    assert given.environment["CUDA_VISIBLE_DEVICES"] == "0"
    cdi_engine = EngineInfo(runtimes=frozenset({"runc"}), cdi_spec_dirs=("/etc/cdi",))
    config = _config(tmp_path, nvidia_cdi=True)
    cdi = NvidiaPlugin.open(config, cdi_engine, StandInNVML(gpus=list(A100)))
    (request,) = cdi.container_devices(cdi.devices()).device_requests
    assert request.driver == "cdi"
    assert request.device_ids == tuple(f"nvidia.com/gpu={d.id}" for d in cdi.devices())


def test_nvidia_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="no NVIDIA driver"):
        NvidiaPlugin.open(_config(tmp_path), NVIDIA_ENGINE, missing_library())
    nvml = StandInNVML()
    with pytest.raises(NodeError, match="install the NVIDIA container toolkit"):
        NvidiaPlugin.open(_config(tmp_path), PLAIN_ENGINE, nvml)
    assert not nvml.initialized  # the handle is not left open when opening fails
    with pytest.raises(NodeError, match="enable CDI"):
        NvidiaPlugin.open(_config(tmp_path, nvidia_cdi=True), NVIDIA_ENGINE, StandInNVML())


# --- AMD (sysfs stand-in files) -------------------------------------------------------------


def test_amd_devices_allocation_and_samples(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    (dev / "kfd").touch()
    (dev / "dri/renderD128").touch()
    plugin = AmdPlugin(STANDIN_HW / "amd-instinct-mi210", dev)
    (gpu,) = plugin.devices()
    assert gpu.id == gpu.uuid == f"GPU-{1234567890123456789:016x}"
    assert gpu.model == "AMD gfx90a (device 0x740f, 104 CUs)"
    assert (gpu.memory_bytes, gpu.bus_id, gpu.numa_node) == (68702699520, "0000:03:00.0", 1)
    given = plugin.container_devices([gpu])
    assert given.devices == (
        f"{dev}/kfd:{dev}/kfd:rwm",
        f"{dev}/dri/renderD128:{dev}/dri/renderD128:rwm",
    )
    assert given.environment == {"ROCR_VISIBLE_DEVICES": "0"}
    (sample,) = plugin.sample()
    assert (sample.util_pct, sample.mem_used, sample.mem_total) == (42.0, GiB, 68702699520)


def test_amd_says_what_is_missing() -> None:
    with pytest.raises(NodeError, match=r"card0 have no ROCm compute"):
        AmdPlugin(STANDIN_HW / "amd-radeon-no-rocm")
    with pytest.raises(NodeError, match="no AMD GPU"):
        AmdPlugin(STANDIN_HW / "no-gpu")


def test_kfd_parsers() -> None:
    assert gfx_name(90010) == "gfx90a"
    assert gfx_name(110000) == "gfx1100"
    assert gfx_name(90402) == "gfx942"
    assert parse_kfd_properties("simd_count 4\nname junk words\nhive_id -1\n") == {
        "simd_count": 4,
        "hive_id": -1,
    }


# --- mock, discovery --------------------------------------------------------------------------


def test_mock_plugin_from_its_file(tmp_path: Path) -> None:
    config = _config(tmp_path, mock_devices=_mock_file(tmp_path, 2))
    plugin = MockPlugin.open(config, PLAIN_ENGINE)
    first, second = plugin.devices()
    assert (first.id, first.memory_bytes) == ("mock-gpu0", 8 * GiB)
    assert "mock" in first.model.lower() and first.uuid == "MOCK-mock-gpu0"
    assert [s.util_pct for s in plugin.sample()] == [0.0, 10.0]
    given = plugin.container_devices([second])
    assert given.environment == {"SHIPYARD_MOCK_DEVICES": "mock-gpu1", "CUDA_VISIBLE_DEVICES": "0"}
    (tmp_path / "bad.toml").write_text('[[devices]]\nid = "x"\nmemroy = "1g"\n')
    with pytest.raises(NodeError, match=r'mock devices: .*bad.toml: unknown key "devices.0.memr'):
        MockPlugin.open(_config(tmp_path, mock_devices=tmp_path / "bad.toml"), PLAIN_ENGINE)


def test_plugins_are_found_through_entry_points(tmp_path: Path) -> None:
    assert {"nvidia", "amd", "mock"} <= set(installed())
    # auto-detection skips the mock plugin and hardware that is absent (this machine has none)
    assert Accelerators.open(_config(tmp_path), PLAIN_ENGINE).devices() == []
    listed = _config(tmp_path, accelerators=["mock"], mock_devices=_mock_file(tmp_path))
    accelerators = Accelerators.open(listed, PLAIN_ENGINE)
    assert accelerators.capacity() == {"cuda.device": Decimal(4)}
    assert accelerators.metadata() == {"mock": {"driver": "mock", "devices_file": "yes"}}
    with pytest.raises(NodeError, match=r"no plugin named tpu is installed \(installed: amd"):
        Accelerators.open(_config(tmp_path, accelerators=["tpu"]), PLAIN_ENGINE)
    with pytest.raises(NodeError, match="accelerator plugin 'nvidia': no NVIDIA driver"):
        Accelerators.open(_config(tmp_path, accelerators=["nvidia"]), PLAIN_ENGINE)


def test_only_the_gpus_node_toml_lists_are_offered(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        accelerators=["mock"],
        mock_devices=_mock_file(tmp_path),
        gpus=["mock-gpu1", "mock-gpu3", "not-here"],
    )
    accelerators = Accelerators.open(config, PLAIN_ENGINE)
    assert accelerators.capacity() == {"cuda.device": Decimal(2)}
    assert [d.id for d in accelerators.devices()] == ["mock-gpu1", "mock-gpu3"]
    assert [s.device_id for s in accelerators.sample()] == ["mock-gpu1", "mock-gpu3"]
    allocation = accelerators.allocator.allocate("k1", {"cuda.device": Decimal(2)})
    assert allocation.container.environment["SHIPYARD_MOCK_DEVICES"] == "mock-gpu1,mock-gpu3"
    with pytest.raises(NodeError, match=r"not enough free cuda\.device"):
        accelerators.allocator.allocate("k2", {"cuda.device": Decimal(1)})
    none = dataclasses.replace(config, gpus=[])  # the operator offers no GPU at all
    assert Accelerators.open(none, PLAIN_ENGINE).capacity() == {"cuda.device": Decimal(0)}


# --- the allocator --------------------------------------------------------------------------


def _allocator(tmp_path: Path, slot: str = "cuda.device") -> Allocator:
    config = _config(tmp_path, mock_devices=_mock_file(tmp_path, 4, slot))
    return Allocator([MockPlugin.open(config, PLAIN_ENGINE)])


def test_whole_devices_are_distinct_released_and_restored(tmp_path: Path) -> None:
    allocator = _allocator(tmp_path)
    a = allocator.allocate("k-a", {"cpu": Decimal(1), "cuda.device": Decimal(2)})
    b = allocator.allocate("k-b", {"cuda.device": Decimal(2)})
    held_a, held_b = set(a.shares["mock"]), set(b.shares["mock"])
    assert len(held_a) == len(held_b) == 2 and not held_a & held_b
    assert allocator.occupied() == {"cuda.device": Decimal(4)}
    with pytest.raises(DevicesUnavailable, match="asked for 1, 0 of 4 free"):
        allocator.allocate("k-c", {"cuda.device": Decimal(1)})
    with pytest.raises(DevicesUnavailable, match=r"whole devices, not 0\.5"):
        allocator.allocate("k-c", {"cuda.device": Decimal("0.5")})
    with pytest.raises(DevicesUnavailable, match=r"no rocm.device devices \(.*: cuda.device\)"):
        allocator.allocate("k-c", {"rocm.device": Decimal(1)})
    allocator.release("k-a")
    c = allocator.allocate("k-c", {"cuda.device": Decimal(2)})
    assert set(c.shares["mock"]) == held_a
    # a restarted node: the same table again from the containers' labels
    restarted = _allocator(tmp_path)
    restarted.restore("k-b", b.label_value())
    restarted.restore("k-c", c.label_value())
    assert restarted.occupied() == {"cuda.device": Decimal(4)}
    with pytest.raises(DevicesUnavailable):
        restarted.allocate("k-d", {"cuda.device": Decimal(1)})


def test_fractional_shares_fill_devices_and_never_exceed_one(tmp_path: Path) -> None:
    allocator = _allocator(tmp_path, "cuda.shares")
    half = allocator.allocate("k-1", {"cuda.shares": Decimal("0.5")})
    (dev,) = half.shares["mock"]
    quarter = allocator.allocate("k-2", {"cuda.shares": Decimal("0.25")})
    assert quarter.shares["mock"] == {dev: Decimal("0.25")}  # the fullest device that fits
    big = allocator.allocate("k-3", {"cuda.shares": Decimal("2.5")})
    assert sorted(big.shares["mock"].values()) == [Decimal("0.5"), 1, 1]
    assert dev not in {d for d, s in big.shares["mock"].items() if s == 1}
    assert allocator.occupied() == {"cuda.shares": Decimal("3.25")}
    with pytest.raises(DevicesUnavailable, match=r"asked for 1, 0\.75 of 4 free"):
        allocator.allocate("k-4", {"cuda.shares": Decimal(1)})
    assert set(allocator.allocate("k-4", {"cuda.shares": Decimal("0.25")}).shares["mock"])
