"""Parsers for what Linux says about itself in /proc, /sys and /etc. Pure functions over text,
so that tests can feed them samples of machines we do not have."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# --- /etc/os-release, /proc/meminfo ---------------------------------------------------------


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw]
        values[key] = parts[0] if parts else ""
    return values


def is_debian_like(os_release: dict[str, str]) -> bool:
    ids = {os_release.get("ID", ""), *os_release.get("ID_LIKE", "").split()}
    return bool(ids & {"debian", "ubuntu"})


def parse_meminfo(text: str) -> dict[str, int]:
    """Bytes per /proc/meminfo field ("MemTotal" -> 25_000_000_000)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(\S+):\s+(\d+)(?:\s+kB)?\s*", line)
        if match:
            number = int(match.group(2))
            values[match.group(1)] = number * 1024 if line.rstrip().endswith("kB") else number
    return values


# --- virtualization (without systemd-detect-virt) -----------------------------------------

_DMI_VENDORS = {
    "QEMU": "qemu",
    "KVM": "kvm",
    "Amazon EC2": "amazon",
    "Google": "google",
    "Microsoft Corporation": "microsoft",
    "VMware": "vmware",
    "innotek GmbH": "oracle",
    "Xen": "xen",
    "Bochs": "bochs",
    "Parallels": "parallels",
    "BHYVE": "bhyve",
}


def guess_virtualization(dmi_vendor: str, dmi_product: str, cpuinfo: str) -> str:
    """ "none", a hypervisor name, or "vm" (some hypervisor, which one unknown)."""
    for text in (dmi_vendor.strip(), dmi_product.strip()):
        for marker, name in _DMI_VENDORS.items():
            if text.startswith(marker):
                return name
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and "hypervisor" in line.split(":", 1)[-1].split():
            return "vm"
    return "none"


# --- /proc/self/mountinfo --------------------------------------------------------------------

# Filesystems that hold no user data: not candidates for anything.
PSEUDO_FS = frozenset(
    [
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "tmpfs",
        "cgroup",
        "cgroup2",
        "securityfs",
        "pstore",
        "bpf",
        "tracefs",
        "debugfs",
        "configfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "autofs",
        "binfmt_misc",
        "efivarfs",
        "nsfs",
        "rpc_pipefs",
        "overlay",
        "squashfs",
        "ramfs",
        "selinuxfs",
        "fuse.lxcfs",
        "fuse.gvfsd-fuse",
    ]
)
NETWORK_FS = frozenset({"nfs", "nfs4", "ceph", "cephfs", "fuse.cephfs", "glusterfs", "cifs"})
_SHARED_VFOLDER_FS = frozenset({"nfs", "nfs4", "ceph", "cephfs", "fuse.cephfs"})


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fs_type: str
    source: str
    options: tuple[str, ...]
    root: str = "/"

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def is_network(self) -> bool:
        return self.fs_type in NETWORK_FS

    @property
    def is_pseudo(self) -> bool:
        return self.fs_type in PSEUDO_FS


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Mounts from /proc/self/mountinfo (proc(5)); later mounts on the same point win."""
    by_point: dict[str, Mount] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        head, tail = left.split(), right.split()
        if len(head) < 6 or len(tail) < 2:
            continue
        mount = Mount(
            mount_point=_unescape(head[4]),
            fs_type=tail[0],
            source=_unescape(tail[1]),
            options=tuple(head[5].split(",")),
            root=_unescape(head[3]),
        )
        by_point.pop(mount.mount_point, None)  # re-insert: keep the order of the last mount
        by_point[mount.mount_point] = mount
    return list(by_point.values())


def mount_for(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount that holds `path` (the longest mount point that is a prefix of it)."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        inside = path == point or path.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) > len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best


@dataclass(frozen=True)
class Space:
    mount: Mount
    total_bytes: int
    free_bytes: int
    writable: bool


_SYSTEM_POINTS = ("/boot", "/boot/efi", "/efi", "/usr", "/snap")


def vfolder_candidates(spaces: list[Space], limit: int = 3) -> list[Space]:
    """Where virtual folders could live: the largest writable local filesystems (by free space),
    then every NFS and CephFS mount (shared storage for a cluster)."""
    local = [
        s
        for s in spaces
        if s.writable
        and not s.mount.is_pseudo
        and not s.mount.is_network
        and s.mount.root == "/"  # a bind mount of a subdirectory is the same filesystem again
        and not s.mount.mount_point.startswith(_SYSTEM_POINTS)
        and not s.mount.mount_point.startswith(("/proc", "/sys", "/dev", "/run", "/var/lib/docker"))
    ]
    local.sort(key=lambda s: s.free_bytes, reverse=True)
    shared = [s for s in spaces if s.mount.fs_type in _SHARED_VFOLDER_FS]
    return local[:limit] + shared


# --- /proc/net/tcp{,6}: who listens where ------------------------------------------------------


def parse_listening(text: str, ipv6: bool = False) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state in a /proc/net/tcp{,6} table."""
    found: list[tuple[str, int]] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":  # 0A = TCP_LISTEN
            continue
        address_hex, _, port_hex = parts[1].partition(":")
        found.append((_address(address_hex, ipv6), int(port_hex, 16)))
    return found


def _address(hex_text: str, ipv6: bool) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_text)
    # the kernel prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.IPv6Address(words) if ipv6 else ipaddress.IPv4Address(words))


def port_taken(listening: list[tuple[str, int]], host: str, port: int) -> bool:
    """Would binding host:port collide with a listener? (wildcards collide with everything)"""
    wild = {"0.0.0.0", "::"}
    for address, used in listening:
        if used != port:
            continue
        if address in wild or host in wild or address == host:
            return True
    return False


# --- PostgreSQL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int
    status: str


def parse_pg_lsclusters(text: str) -> list[Cluster]:
    """`pg_lsclusters -h` lines: version, cluster, port, status, owner, data dir, log."""
    clusters = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2].isdigit():
            clusters.append(Cluster(parts[0], parts[1], int(parts[2]), parts[3]))
    return clusters
