"""Detection: the parsers over sample files, the accelerators over stand-ins for hardware we do
not have, and the whole report on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from installer import _gpu, _sysinfo, detect
from installer._report import Finding, Report
from tests.installer.standin_pynvml import StandInNVML, missing_library

STANDIN = Path(__file__).with_name("standin_hw")
PID1 = Path("/proc/1/comm").read_text().strip()
GiB = 2**30

# /proc/self/mountinfo of a made-up NFS/CephFS client (the layout is proc(5)'s)
MOUNTINFO = r"""22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
23 28 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
29 28 259:1 / /boot/efi rw,relatime shared:30 - vfat /dev/nvme0n1p1 rw,fmask=0077
30 28 259:3 / /data rw,relatime shared:31 - xfs /dev/nvme1n1 rw,attr2,inode64
31 28 259:4 / /mnt/my\040disk ro,relatime shared:32 - ext4 /dev/sdb1 ro
32 28 0:50 / /shared rw,relatime shared:33 - nfs4 10.0.0.2:/export rw,vers=4.2
33 28 0:51 / /ceph rw,relatime shared:34 - ceph 10.0.0.3:6789:/ rw,name=admin
34 28 0:52 / /run rw,nosuid,nodev - tmpfs tmpfs rw,size=1632324k
35 28 259:3 /srv/x /srv/x rw,relatime - xfs /dev/nvme1n1 rw
"""


def test_mountinfo_is_parsed_with_escapes_and_types() -> None:
    mounts = {m.mount_point: m for m in _sysinfo.parse_mountinfo(MOUNTINFO)}
    assert mounts["/"].fs_type == "ext4" and mounts["/"].source == "/dev/nvme0n1p2"
    assert mounts["/mnt/my disk"].read_only
    assert mounts["/shared"].is_network and mounts["/shared"].source == "10.0.0.2:/export"
    assert mounts["/proc"].is_pseudo and mounts["/run"].is_pseudo
    assert mounts["/srv/x"].root == "/srv/x"
    assert _sysinfo.mount_for("/var/lib/shipyard", list(mounts.values())) is mounts["/"]
    assert _sysinfo.mount_for("/data/vf", list(mounts.values())) is mounts["/data"]
    assert _sysinfo.mount_for("/data", list(mounts.values())) is mounts["/data"]


def test_vfolder_candidates_are_the_largest_writable_local_filesystems_and_shared_ones() -> None:
    mounts = {m.mount_point: m for m in _sysinfo.parse_mountinfo(MOUNTINFO)}

    def space(point: str, free_gib: int, writable: bool = True) -> _sysinfo.Space:
        return _sysinfo.Space(mounts[point], 2 * free_gib * GiB, free_gib * GiB, writable)

    spaces = [
        space("/", 50),
        space("/boot/efi", 1),
        space("/data", 900),
        space("/mnt/my disk", 5000, writable=False),
        space("/shared", 10),
        space("/ceph", 20),
        space("/srv/x", 900),  # a bind mount of /data's filesystem: not a second candidate
    ]
    chosen = [s.mount.mount_point for s in _sysinfo.vfolder_candidates(spaces)]
    assert chosen == ["/data", "/", "/shared", "/ceph"]


def test_os_release_meminfo_and_listeners() -> None:
    release = _sysinfo.parse_os_release(
        'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\n# comment\n'
    )
    assert release["PRETTY_NAME"] == "Ubuntu 24.04.1 LTS"
    assert _sysinfo.is_debian_like(release)
    assert not _sysinfo.is_debian_like({"ID": "fedora"})
    assert _sysinfo.parse_meminfo("MemTotal:       16314924 kB\nHugePages_Total:       0\n") == {
        "MemTotal": 16314924 * 1024,
        "HugePages_Total": 0,
    }
    tcp = (
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000\n"
        "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000\n"
        "   2: 0100007F:1F91 0100007F:D682 01 00000000:00000000 00:00000000\n"
    )
    listening = _sysinfo.parse_listening(tcp)
    assert listening == [("127.0.0.1", 8081), ("0.0.0.0", 22)]
    tcp6 = (
        "  sl  local_address                         remote_address st\n"
        "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A\n"
    )
    assert _sysinfo.parse_listening(tcp6, ipv6=True) == [("::1", 8080)]
    assert _sysinfo.port_taken(listening, "127.0.0.1", 8081)
    assert _sysinfo.port_taken(listening, "0.0.0.0", 8081)
    assert _sysinfo.port_taken(listening, "10.1.2.3", 22)  # 22 listens everywhere
    assert not _sysinfo.port_taken(listening, "127.0.0.1", 8082)


def test_virtualization_without_systemd_detect_virt() -> None:
    assert _sysinfo.guess_virtualization("QEMU\n", "Standard PC (Q35 + ICH9, 2009)", "") == "qemu"
    assert _sysinfo.guess_virtualization("", "", "flags\t: fpu vme hypervisor lm\n") == "vm"
    assert _sysinfo.guess_virtualization("Dell Inc.", "PowerEdge R750", "flags : fpu lm") == "none"


def test_pg_lsclusters() -> None:
    text = (
        "15 main 5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/x.log\n"
        "16 test 5433 down   postgres /var/lib/postgresql/16/test /var/log/postgresql/y.log\n"
    )
    clusters = _sysinfo.parse_pg_lsclusters(text)
    assert [(c.version, c.port, c.status) for c in clusters] == [
        ("15", 5432, "online"),
        ("16", 5433, "down"),
    ]


# --- accelerators (stand-ins: we have no GPUs) ---------------------------------------------


def test_nvidia_through_a_standin_nvml() -> None:
    nvml = StandInNVML()
    findings = _gpu.nvidia_findings(nvml)
    summary, first, second = findings
    assert summary.status == "ok"
    assert summary.value == {"driver": "550.54.15", "cuda": "12.4", "count": 2}
    assert first.value["name"] == "NVIDIA A100-SXM4-80GB"  # bytes from old bindings decoded
    assert first.value["memory_bytes"] == 80 * GiB
    assert "80 GiB" in first.detail
    assert second.value["uuid"].startswith("GPU-6666")
    assert nvml.shutdowns == 1 and not nvml.initialized


def test_no_nvidia_driver_is_a_finding_not_an_error() -> None:
    (finding,) = _gpu.nvidia_findings(missing_library())
    assert finding.status == "info"
    assert finding.detail.startswith("no NVIDIA driver/NVML library")
    (empty, *_rest) = _gpu.nvidia_findings(StandInNVML(gpus=[]))
    assert empty.status == "info" and empty.value["count"] == 0


def test_an_nvidia_card_without_its_driver_is_a_warning(tmp_path: Path) -> None:
    for address, vendor, pci_class in (
        ("0000:01:00.0", "0x10de", "0x030000"),  # the GPU
        ("0000:01:00.1", "0x10de", "0x040300"),  # its audio function
        ("0000:00:02.0", "0x8086", "0x030000"),  # another vendor's graphics
    ):
        device = tmp_path / "bus/pci/devices" / address
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
        (device / "class").write_text(pci_class + "\n")
    (finding,) = _gpu.nvidia_findings(missing_library(), sysfs=tmp_path)
    assert finding.status == "warning" and finding.value == {"pci": ["0000:01:00.0"]}
    assert "install the NVIDIA driver" in finding.detail


def test_amd_through_sample_sysfs_files() -> None:
    summary, gpu = _gpu.amd_findings(STANDIN / "amd-instinct-mi210")
    assert summary.status == "ok" and summary.value == {"count": 1, "cards": ["card0"]}
    assert gpu.value == {
        "id": "GPU-112210f47de98115",  # what node.toml `gpus` lists (from unique_id)
        "kfd_node": 1,
        "gfx": "gfx90a",
        "device_id": "0x740f",
        "compute_units": 104,
        "vram_bytes": 68702699520,
    }
    assert gpu.detail == "gfx90a (device 0x740f), 104 CUs, 64 GiB"


def test_amd_card_without_rocm_and_no_gpu() -> None:
    (finding,) = _gpu.amd_findings(STANDIN / "amd-radeon-no-rocm")
    assert finding.status == "warning" and finding.value == {"cards": ["card0"]}
    assert "ROCm" in finding.detail
    (none,) = _gpu.amd_findings(STANDIN / "no-gpu")
    assert none.status == "info"


# --- the whole report, on this machine ---------------------------------------------------------


@pytest.mark.trio
async def test_detect_reports_every_section_and_explains_itself(tmp_path: Path) -> None:
    report = await detect.detect(config_dir=tmp_path / "etc", unit_dir=tmp_path / "units")
    sections = report.sections()
    assert all(sections[name] for name in sections), sections
    for finding in (f for items in sections.values() for f in items):
        assert finding.status in ("ok", "warning", "error", "info")
        assert finding.detail.strip(), finding
    data = json.loads(report.to_json())
    assert set(data) == set(sections)
    assert Report.from_dict(data) == report
    assert report.value("system", "memory") > 0
    pid1 = PID1
    init = report.get("init", "pid1")
    assert init is not None and init.value == pid1
    assert init.status == ("ok" if pid1 == "systemd" else "error")
    assert report.value("installation", "shipyard") is None  # nothing in tmp_path
    mounts = report.value("storage", "mounts")
    assert any(m["mount_point"] == "/" and m["free_bytes"] > 0 for m in mounts)
    assert "SYSTEM" in detect.render_table(report)


@pytest.mark.trio
async def test_a_stuck_probe_costs_one_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    async def stuck() -> list[Finding]:
        await trio.sleep_forever()
        raise AssertionError

    monkeypatch.setattr(detect, "_engine", stuck)
    with trio.fail_after(10):
        report = await detect.detect(time_limit=1)
    (engine,) = report.engine
    assert (engine.name, engine.status) == ("docker", "warning")
    assert "took over 1 s" in engine.detail
    assert report.system  # the other probes still answered
