"""Relayed streams inside the kernel: part of the runner (stdlib only, Python 3.9+).

The runner dials a second socket of the node, ``relay.sock`` next to ``node.sock``, from a
thread of its own, so a terminal or an app connection opens while a run is in progress. The node
keeps no app-specific code: it forwards bytes, and everything that knows about apps is here and
in the image. Each connection carries one stream. The node writes one JSON line, the runner
answers one JSON line, and from then on the connection carries the stream:

``{"op": "connect", "port": N, "app": "NAME"}``
    Connect to 127.0.0.1:N inside the container (its own loopback, which exists with
    ``--network none``). When nothing listens there and the image defines the app in
    ``/etc/backend.ai/service-defs/NAME.json`` (``{"command": [...]}``, where ``{ports[0]}``
    stands for the port, as in Backend.AI's images), start it once (its output goes to the
    container log) and wait up to APP_START_TIMEOUT for the port: apps start on demand.
    -> ``{"kind": "ready"}``, then raw bytes both ways; or ``{"kind": "error", "message": ...}``.
    An optional ``"env"`` object (strings) is added to the environment of an app started then.
    A definition with ``"inetd": true`` is started once per connection instead, as inetd
    does (``dropbear -i``): after the answer, its stdin and stdout are a connection of its own,
    one end of a socket pair whose other end the runner joins to the stream. Not the stream's
    socket itself: that one's peer is the node's socket, a path longer than a peer address can
    be (dropbear formats its peer with getnameinfo into NI_MAXSERV = 32 bytes, fails and exits
    before its banner); a socket pair's peer has no name.

``{"op": "pty", "rows": R, "cols": C, "command": [...]}``
    A new terminal running ``command`` (the user's login shell when empty) in the work
    directory. -> ``{"kind": "ready"}``, then frames both ways: one type byte, 4 bytes of
    length (big-endian) and the payload. To the runner: ``i`` input bytes, ``r`` resize
    (rows, cols: 2 bytes each). From the runner: ``o`` output bytes, and last ``x`` the exit
    status (4 bytes, signed; 128 + S after signal S), after which the runner closes. A node
    that closes first hangs the terminal up (SIGHUP to its session).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from typing import Any

SERVICE_DEFS = "/etc/backend.ai/service-defs"
APP_START_TIMEOUT = 120.0  # JupyterLab takes 3-4 s on an idle machine; much more under load
APP_POLL = 0.1
CHUNK = 65536
_APP_NAME = re.compile(r"^[\w-]{1,64}$")
_HEADER = struct.Struct(">cI")
_apps: dict[str, subprocess.Popen[bytes]] = {}
_apps_lock = threading.Lock()


def _answer(conn: socket.socket, kind: str, **fields: Any) -> None:
    conn.sendall((json.dumps({"kind": kind, **fields}) + "\n").encode())


def serve_one(conn: socket.socket, line: bytes, workdir: str) -> None:
    """Serve the stream the request `line` asks for on `conn` (a thread per stream)."""
    try:
        req = json.loads(line.decode())
        if not isinstance(req, dict):
            raise ValueError("the request must be a JSON object")
        if req.get("op") == "connect":
            port, app, env = _port(req.get("port")), str(req.get("app") or ""), _env(req)
            definition = _service_def(app)
            if definition is not None and definition.get("inetd") is True:
                upstream, proc = _start_inetd(_command(definition, port), env, workdir)
                _answer(conn, "ready")
                _splice(conn, upstream)
                proc.wait()  # it has closed its end; collect it
            else:
                upstream = _reach(port, app, definition, env, workdir)
                _answer(conn, "ready")
                _splice(conn, upstream)
        elif req.get("op") == "pty":
            _serve_pty(conn, req, workdir)
        else:
            raise ValueError(f"unknown op {req.get('op')!r}")
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            _answer(conn, "error", message=str(exc))
    finally:
        # shutdown first: a close alone would neither wake a thread still reading from the
        # connection nor, while that read holds it, tell the node
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()


def _port(value: Any) -> int:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("port must be an integer from 1 to 65535")
    return value


# --- apps on the container's loopback ---------------------------------------------------------


def _env(req: dict[str, Any]) -> dict[str, str]:
    env = req.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("env must be an object of strings")
    return dict(os.environ, **env)


def _service_def(app: str) -> dict[str, Any] | None:
    """The image's definition of `app`, None when it has none (or an unreadable one)."""
    if not _APP_NAME.match(app):
        return None
    try:
        with open(os.path.join(SERVICE_DEFS, app + ".json"), "rb") as f:
            definition: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    command = definition.get("command") if isinstance(definition, dict) else None
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        return None
    return definition


def _command(definition: dict[str, Any], port: int) -> list[str]:
    return [a.replace("{ports[0]}", str(port)) for a in definition["command"]]


def _reach(
    port: int, app: str, definition: dict[str, Any] | None, env: dict[str, str], workdir: str
) -> socket.socket:
    """A connection to the app's port, starting the app first when nothing listens."""
    deadline = None
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            pass
        if deadline is None:
            if definition is None:
                raise OSError(f"nothing listens on port {port} in the kernel")
            _start_app(app, _command(definition, port), env, workdir)
            deadline = time.monotonic() + APP_START_TIMEOUT
        proc = _apps.get(app)
        if proc is not None and proc.poll() is not None:
            raise OSError(f"the app {app} exited with status {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise OSError(f"the app {app} did not listen on port {port} in time")
        time.sleep(APP_POLL)


def _start_app(app: str, argv: list[str], env: dict[str, str], workdir: str) -> None:
    """Start `app` unless it runs already (another connection asked first)."""
    with _apps_lock:
        proc = _apps.get(app)
        if proc is not None and proc.poll() is None:
            return
        _log(f"starting app {app}: {' '.join(argv)}")
        _apps[app] = subprocess.Popen(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )


def _start_inetd(
    argv: list[str], env: dict[str, str], workdir: str
) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """`argv` started on a connection of its own (its stdin and stdout), and our end of it."""
    mine, its = socket.socketpair()
    try:
        with its:
            proc = subprocess.Popen(
                argv, cwd=workdir, env=env, stdin=its.fileno(), stdout=its.fileno(),
                start_new_session=True,
            )  # fmt: skip
    except BaseException:
        mine.close()
        raise
    return mine, proc


def _splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both directions ended."""
    other = threading.Thread(target=_pump, args=(b, a), daemon=True)
    other.start()
    _pump(a, b)
    other.join()
    b.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        src.settimeout(None)
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        src.shutdown(socket.SHUT_RD)


# --- terminals --------------------------------------------------------------------------------


def _login_shell() -> str:
    import pwd

    with contextlib.suppress(KeyError):
        shell = pwd.getpwuid(os.getuid()).pw_shell
        if shell and os.access(shell, os.X_OK):
            return shell
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def _winsize(rows: int, cols: int) -> bytes:
    return struct.pack("HHHH", max(1, min(rows, 9999)), max(1, min(cols, 9999)), 0, 0)


def _serve_pty(conn: socket.socket, req: dict[str, Any], workdir: str) -> None:
    rows, cols, command = req.get("rows", 24), req.get("cols", 80), req.get("command") or []
    if not isinstance(rows, int) or not isinstance(cols, int):
        raise ValueError("rows and cols must be integers")
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise ValueError("command must be a list of strings")
    argv = command or [_login_shell(), "-l"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: only async-signal-safe work before exec
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, _winsize(rows, cols))
            os.chdir(workdir)
            env = dict(os.environ, TERM="xterm-256color", SHELL=argv[0])
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    _answer(conn, "ready")
    threading.Thread(target=_pty_input, args=(conn, fd, pid), daemon=True).start()
    with contextlib.suppress(OSError):
        while True:
            try:
                data = os.read(fd, CHUNK)
            except OSError:  # EIO: every holder of the terminal's other side has gone
                break
            if not data:
                break
            conn.sendall(_HEADER.pack(b"o", len(data)) + data)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(OSError):
        conn.sendall(_HEADER.pack(b"x", 4) + struct.pack(">i", 128 - code if code < 0 else code))
    os.close(fd)


def _pty_input(conn: socket.socket, fd: int, pid: int) -> None:
    try:
        while True:
            frame = _read_frame(conn)
            if frame is None:
                break
            kind, payload = frame
            if kind == b"i":
                os.write(fd, payload)
            elif kind == b"r" and len(payload) == 4:
                rows, cols = struct.unpack(">HH", payload)
                fcntl.ioctl(fd, termios.TIOCSWINSZ, _winsize(rows, cols))
    except OSError:
        pass
    with contextlib.suppress(OSError):  # the node went: hang the terminal up
        os.killpg(pid, signal.SIGHUP)


def _read_frame(conn: socket.socket) -> tuple[bytes, bytes] | None:
    header = _read_exactly(conn, _HEADER.size)
    if header is None:
        return None
    kind, size = _HEADER.unpack(header)
    payload = _read_exactly(conn, size)
    return None if payload is None else (kind, payload)


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        data = conn.recv(min(size, CHUNK))
        if not data:
            return None
        chunks.append(data)
        size -= len(data)
    return b"".join(chunks)


def _log(message: str) -> None:
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"runner: {message}\n")
        sys.__stderr__.flush()
