"""Run a command under Debian's kernel in a throw-away KVM guest, for tests that need what this
machine's kernel may lack (project quotas: ext4 built without CONFIG_QUOTA, XFS without quota
support).

The guest has no network device (`-nic none`). Its root is this machine's `/`, shared read-only
over 9p, so it runs this tree's own .venv; it writes only to its own tmpfs, its own loop files
and the one folder shared writable for the result. The kernel is Debian's linux-image package,
unpacked by `./dev test` (never installed: its scripts would write /boot and rebuild the host's
initramfs) and found through SHIPYARD_TEST_QUOTA_KERNEL. The initramfs is made here: busybox
and the few modules the guest needs (virtio, 9p, loop, ext4, XFS, the quota format), loaded in
dependency order by a tiny /init that runs the command chrooted into the shared root and
powers off.
"""

from __future__ import annotations

import gzip
import io
import os
import shlex
import shutil
import subprocess
from pathlib import Path

KERNEL_ENV = "SHIPYARD_TEST_QUOTA_KERNEL"
TCG_ENV = "SHIPYARD_TEST_QUOTA_VM_TCG"  # "1": emulate the guest where KVM cannot run it
QEMU = "qemu-system-x86_64"
MODULES = (
    "virtio_pci", "9pnet_virtio", "9p", "loop", "crc32c_generic", "ext4", "xfs", "quota_v2",
)  # fmt: skip
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod /lib/$m.ko || echo "insmod $m failed"; done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=524288,cache=loose root /root
for d in proc sys dev; do mount --move /$d /root/$d; done
mount -t tmpfs tmp /root/tmp; mount -t tmpfs run /root/run
mkdir -p /root$OUT  # a share under /tmp is hidden by the tmpfs just mounted there
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 out /root$OUT
chroot /root /bin/sh $OUT/command >/root$OUT/output 2>&1
echo $? >/root$OUT/rc
sync; umount /root$OUT
poweroff -f
"""


def kvm_problem() -> str | None:
    """Why KVM cannot run Debian's kernel here, or None."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not usable here"
    if not any(Path(f"/sys/module/{m}").exists() for m in ("kvm_intel", "kvm_amd")):
        # e.g. kvm_pvm (a VM inside a VM without hardware virtualization): it runs only guest
        # kernels built for it, and no firmware, so SeaBIOS hangs at its first real-mode step
        return "/dev/kvm is not hardware KVM (no kvm_intel or kvm_amd module)"
    return None


def problem() -> str | None:
    """Why a guest cannot run here, or None."""
    why = kvm_problem()
    if why and os.environ.get(TCG_ENV) != "1":
        return f"{why}; `./dev quota-vm` runs the guest emulated (minutes)"
    if shutil.which(QEMU) is None:
        return f"no {QEMU} (./dev test installs qemu-system-x86 where KVM works)"
    if not os.environ.get(KERNEL_ENV):
        return f"{KERNEL_ENV} is unset (./dev test unpacks Debian's kernel and sets it)"
    if shutil.which("busybox") is None:
        return "no busybox (./dev setup installs busybox-static)"
    return None


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc archive of (path, mode, data): directories have S_IFDIR modes and no data."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4) + data + b"\0" * (-len(data) % 4))
    return out.getvalue()


def _depends(module: Path) -> list[str]:
    for field in module.read_bytes().split(b"\0"):
        if field.startswith(b"depends="):
            return [d for d in field[8:].decode().split(",") if d]
    return []


def initramfs(kernel: Path) -> bytes:
    """Busybox, the guest's modules (each after what it depends on) and /init."""
    found = {p.stem.replace("-", "_"): p for p in kernel.glob("lib/modules/*/kernel/**/*.ko")}
    order: list[str] = []

    def add(name: str) -> None:
        if name not in order:
            for dependency in _depends(found[name]):
                add(dependency)
            order.append(name)

    for name in MODULES:
        add(name)
    directory = 0o040755
    entries = [(d, directory, b"") for d in ("bin", "lib", "proc", "sys", "dev", "root")]
    entries.append(("bin/busybox", 0o100755, Path(shutil.which("busybox") or "").read_bytes()))
    entries += [(f"lib/{m}.ko", 0o100644, found[m].read_bytes()) for m in order]
    entries.append(("modules", 0o100644, " ".join(order).encode()))
    entries.append(("init", 0o100755, INIT.encode()))
    return gzip.compress(_cpio(entries), compresslevel=1)


def time_limit() -> float:
    # emulated, Python runs ~50 times slower: importing the control plane takes minutes
    return 120 if kvm_problem() is None else 1500


def run(command: str, cwd: Path, work: Path, timeout: float) -> tuple[int, str]:
    """Run `command` (sh) in `cwd` inside a guest; its exit status and output. `work` holds
    the initramfs and the writable share."""
    kernel = Path(os.environ[KERNEL_ENV])
    out = work / "out"
    out.mkdir(parents=True)
    (work / "initrd").write_bytes(initramfs(kernel))
    (out / "command").write_text(f"cd {shlex.quote(str(cwd))} && {command}\n")
    assert " " not in str(out), f"{out}: the guest is told this path on its kernel command line"
    accel = "kvm" if kvm_problem() is None else "tcg,thread=multi"
    qemu = [
        *(QEMU, "-accel", accel, "-m", "1536", "-smp", "2", "-nic", "none"),
        *("-display", "none", "-serial", f"file:{work / 'console'}", "-monitor", "none"),
        *("-no-reboot", "-kernel", str(next(kernel.glob("boot/vmlinuz-*")))),
        *("-initrd", str(work / "initrd")),
        "-append",
        f"console=ttyS0 panic=-1 OUT={out}",
        *("-virtfs", "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap"),
        *("-virtfs", f"local,path={out},mount_tag=out,security_model=none"),
    ]
    guest = subprocess.Popen(qemu, stdin=subprocess.DEVNULL)
    try:
        guest.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if guest.returncode is None:
            guest.kill()
            guest.wait()
    output = (out / "output").read_text(errors="replace") if (out / "output").exists() else ""
    if not (out / "rc").exists():
        console = (work / "console").read_text(errors="replace")
        raise RuntimeError(
            f"the guest gave no result within {timeout} s; its console:\n{console[-3000:]}"
            f"\nthe command's output:\n{output[-3000:]}"
        )
    return int((out / "rc").read_text()), output
