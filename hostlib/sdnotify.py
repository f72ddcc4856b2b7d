"""systemd's readiness and watchdog protocol (sd_notify(3)), stdlib only.

Everything here does nothing unless systemd asked for it: `NOTIFY_SOCKET` for `notify`,
`WATCHDOG_USEC` (and `WATCHDOG_PID`, when set, naming our service's main process) for the
watchdog. So the same code runs unchanged under `shipyard up`, in tests and under systemd.

The packaged executable is a PyInstaller one-file build: its bootloader is the service's main
process and runs Python as its child. With `NotifyAccess=main` systemd ignores messages from that
child, so the child sends them on behalf of its bootloader parent (SCM_CREDENTIALS naming the
parent's pid, which root may do; the bootloader forwards signals and exits with the child, so it
speaks for the same service).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys

import anyio

log = logging.getLogger(__name__)


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):  # abstract namespace
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    return None  # unset, or a kind we do not speak (vsock:)


def _onefile_parent() -> int | None:
    """The pid of our PyInstaller one-file bootloader, when that is what started us."""
    if not getattr(sys, "frozen", False):
        return None
    parent = os.getppid()
    try:
        same = os.readlink(f"/proc/{parent}/exe") == os.readlink("/proc/self/exe")
    except OSError:
        return None
    return parent if same else None


def _sender_pid() -> int:
    """The pid to speak as: the service's main process if that is our bootloader, else us."""
    main = os.environ.get("WATCHDOG_PID", "")
    parent = _onefile_parent()
    if parent is not None and (not main or main == str(parent)):
        return parent
    return os.getpid()


def notify(*fields: str) -> bool:
    """Send `fields` ("READY=1", "STATUS=...") to systemd; False when not under systemd."""
    address = _address()
    if address is None:
        return False
    message = "\n".join(fields).encode()
    pid = _sender_pid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            if pid == os.getpid():
                sock.sendall(message)
            else:
                creds = struct.pack("3i", pid, os.getuid(), os.getgid())
                ancillary = [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)]
                try:
                    sock.sendmsg([message], ancillary)
                except PermissionError:  # not root: speak for ourselves
                    sock.sendall(message)
        except OSError as exc:
            log.warning("could not notify systemd at %s: %s", address.lstrip("\0"), exc)
            return False
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def watchdog_interval() -> float | None:
    """Seconds between keep-alive pings (half of WatchdogSec), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    main = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or _address() is None:
        return None
    if main and main not in (str(os.getpid()), str(_onefile_parent())):
        return None  # the watchdog is for another process of the service
    return int(usec) / 1e6 / 2


async def watchdog() -> None:
    """Ping systemd's watchdog for as long as this task runs; returns at once without one.
    Runs under trio (the node) and asyncio (the control plane) alike."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await anyio.sleep(interval)
