"""Shipyard in-container runner (stdlib only, Python 3.9+).

Started as the kernel container's command::

    python3 /opt/shipyard/runner.py /run/shipyard/node.sock

The node listens on the Unix socket given as argv[1], in a directory the container sees read-only,
and the runner dials it: the container can neither replace that socket nor point the node anywhere
else, because the node never opens a path the container can change. The runner logs one line to
its real stderr: ``runner: dialling PATH (pid N)``.

Protocol: JSON lines, UTF-8, one object per ``\\n``-terminated line, both directions. Runner
output is pure ASCII JSON (non-ASCII characters are ``\\u`` escaped). One connection carries one
request. The runner keeps exactly one idle connection open to the node and waits on it for the
next request; once that request is served it closes the connection and dials again, so runs are
served one at a time (this serialises runs). When the node is not listening (it is restarting),
or drops the idle connection, the runner dials again with a capped backoff.

Requests (the first line a client sends) and the items the runner answers with:

``{"op": "ping"}``
    -> ``{"kind": "pong", "pid": <int>}``, then the runner closes the connection.

``{"op": "complete", "code": "<python source up to the cursor>"}``
    -> ``{"kind": "completions", "items": [...]}``: names (and attributes, for ``a.b``) the
    last word of the code could complete to, from the query interpreter's globals and the
    builtins (``rlcompleter``; at most 100), then the runner closes the connection.

``{"op": "query", "code": "<python source>"}``
    Runs the code in one persistent interpreter (a single globals dict with
    ``__name__ == "__main__"`` kept for the runner's lifetime), compiled as ``"<input>"``.
    -> any number of ``{"kind": "stdout" | "stderr", "data": "<text>"}`` items, one per write,
    in the order they were written; every write is also copied to the container log.
    -> ``{"kind": "waiting-input", "prompt": "<text>", "password": false | true}`` when the code
    calls ``input()`` (password false) or ``getpass.getpass()`` (password true). The client
    must then send ``{"op": "input", "text": "<line>"}`` on the same connection; the text, minus
    one trailing newline, is what the call returns. If the client disconnects (or sends anything
    else), the call raises EOFError in the user code.
    -> ``{"kind": "finished", "exit_code": <int>}`` last: 0 on success; 1 after an uncaught
    exception (its traceback, starting at ``File "<input>"``, goes to stderr first);
    ``SystemExit(code)``: None -> 0, an int -> that int, anything else -> printed to stderr, 1.
    The interpreter survives all of these, KeyboardInterrupt included.

``{"op": "batch", "clean": str|null, "build": str|null, "exec": str|null}``
    Runs each given command (null, "" and "*" mean none) in the order clean, build, exec as
    ``/bin/sh -c CMD`` in the runner's start directory, stdin /dev/null.
    -> stdout/stderr items as the process writes (UTF-8, invalid bytes replaced).
    -> ``{"kind": "clean-finished", "exit_code": n}`` after clean and
    ``{"kind": "build-finished", "exit_code": n}`` after build; a non-zero code stops there.
    -> ``{"kind": "finished", "exit_code": n}`` last: the code of the last step run (0 if none).
    The exit code is the shell's status; death by signal S gives 128 + S. A step killed by
    the kernel's out-of-memory killer (the container's memory cgroup counted an ``oom_kill``
    while it ran) adds ``"reason": "killed: out of memory (memory limit N)"`` to ``finished``,
    after a stderr item saying the same.

Anything else (bad JSON, not an object, unknown op, wrong field types) ->
``{"kind": "stderr", "data": "runner: <what is wrong>\\n"}`` then ``{"kind": "finished",
"exit_code": 2}``.

A client that goes away mid-run does not stop the run: it continues to the end with its output
discarded (still copied to the container log), then the runner dials again.

A run that ends with a non-zero code while the work directory or /tmp is (nearly) full gets one
more stderr item saying so (``shipyard: /home/work is full (12 KiB free of 1006 MiB) ...``): a
write that failed for lack of space is then explained, whichever program made it.

Relayed streams (terminals, connections to apps in the kernel) are served by shipyard_relay.py,
next to this file, from a thread that dials ``relay.sock`` beside the socket given as argv[1].

Interrupting: SIGINT to the runner raises KeyboardInterrupt in a running query (reported as an
exception, exit code 1) or is passed to a running batch command's process group; when idle the
runner ignores it. SIGTERM ends the runner.
"""

from __future__ import annotations

# Only what serving a query needs is imported at start. A runner starts with every new kernel,
# often on a small CPU share (0.02 CPU is 2 ms of each 100 ms), where each millisecond of its
# start is 50 ms that the session waits: batch commands (subprocess, selectors), completions
# (rlcompleter imports inspect), tracebacks and the relay import theirs on first use. Halves
# the runner's start (about 70 -> 35 ms of CPU in python:3.11).
import builtins
import contextlib
import getpass
import io
import json
import os
import signal
import socket
import sys
import threading
import time
import types

TYPE_CHECKING = False  # typing itself costs several ms to import; mypy reads this name as True
if TYPE_CHECKING:
    import subprocess
    from typing import Any, TextIO

CHUNK = 65536
RELAY_SOCKET = "relay.sock"  # beside the node's socket: relayed streams (shipyard_relay.py)
REDIAL_FIRST, REDIAL_MAX = 0.05, 1.0  # seconds between tries to reach a node that is not listening
# a filesystem counts as full with less than this free (fraction of its size, capped): ext4 keeps
# up to 2% (at most 16 MiB) back for itself, so a write fails before free space reaches zero
FULL_BELOW, FULL_BELOW_MAX = 0.03, 64 * 1024 * 1024
BATCH_STEPS = (("clean", "clean-finished"), ("build", "build-finished"), ("exec", None))


class Conn:
    """One client connection. Sending never raises: once the client is gone, items are dropped,
    so user code keeps running to completion."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._lock = threading.Lock()  # user threads may print concurrently
        self.alive = True

    def send(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, **fields}) + "\n"
        with self._lock:
            if not self.alive:
                return
            # SIGINT is held back while sending: a KeyboardInterrupt raised inside sendall()
            # would leave half a JSON line on the wire. It is delivered right after.
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                self._sock.sendall(line.encode("ascii"))
            except OSError:
                self.alive = False
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def read_line(self) -> bytes:
        """The next line from the client; b"" on EOF or a broken connection."""
        if not self.alive:
            return b""
        try:
            return self._reader.readline()
        except OSError:
            self.alive = False
            return b""

    def close(self) -> None:
        self.alive = False
        for closable in (self._reader, self._sock):
            with contextlib.suppress(OSError):
                closable.close()


def _tee(kind: str, text: str) -> None:
    """Copy output to the container log so `docker logs` keeps the session's history."""
    real = sys.__stdout__ if kind == "stdout" else sys.__stderr__
    if real is None:
        return
    try:
        real.write(text)
        real.flush()
    except (OSError, ValueError):
        pass


class ClientStream(io.TextIOBase):
    """sys.stdout/sys.stderr during a query: every write goes out at once, as its own item."""

    def __init__(self, conn: Conn, kind: str) -> None:
        super().__init__()
        self._conn = conn
        self._kind = kind

    encoding = "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if s:
            self._conn.send(self._kind, data=s)
            _tee(self._kind, s)
        return len(s)


# --- query mode -------------------------------------------------------------------------------

# The user's namespace is a real module installed as sys.modules["__main__"] (see main()), so
# pickle, dataclasses, typing.get_type_hints and `import __main__` find names the user defined.
_user_main = types.ModuleType("__main__")
_globals: dict[str, Any] = _user_main.__dict__
_globals["__builtins__"] = builtins
_current: Conn | None = None  # the connection of the query in progress, for input()/getpass()
_in_user_code = False  # SIGINT raises KeyboardInterrupt only while this is set
_child: subprocess.Popen[bytes] | None = None  # the running batch command, for SIGINT
_OWN_FILE = (lambda: None).__code__.co_filename  # exactly as it appears in tracebacks


def _read_input(prompt: str, password: bool) -> str:
    conn = _current
    if conn is None:  # e.g. a thread left over from an earlier run
        raise EOFError("no client is attached")
    conn.send("waiting-input", prompt=prompt, password=password)
    try:
        msg = json.loads(conn.read_line().decode("utf-8"))
    except ValueError:  # EOF (b"" is invalid JSON) or garbage
        raise EOFError("the client closed the input") from None
    if not isinstance(msg, dict) or msg.get("op") != "input":
        raise EOFError("the client sent no input")
    text = msg.get("text")
    if not isinstance(text, str):
        raise EOFError('the input message has no "text" string')
    return text[:-1] if text.endswith("\n") else text


def _input(prompt: object = "") -> str:
    return _read_input(str(prompt), password=False)


def _getpass(prompt: str = "Password: ", stream: TextIO | None = None) -> str:
    return _read_input(str(prompt), password=True)


def _print_exception(exc: BaseException) -> None:
    """Print the traceback as Python would, minus the runner's own frames (at the top, the exec
    call; at the bottom, the input() hook), so it starts at File "<input>"."""
    import traceback  # on first use: see the imports

    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    todo: list[Any] = [te]
    seen: set[int] = set()
    while todo:
        t = todo.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        frames = [f for f in t.stack if f.filename != _OWN_FILE]
        t.stack = traceback.StackSummary.from_list(frames)
        todo += [t.__cause__, t.__context__, *(getattr(t, "exceptions", None) or [])]
    sys.stderr.write("".join(te.format()))


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    sys.stderr.write(f"{exc.code}\n")
    return 1


def _execute(code: str) -> int:
    global _in_user_code
    try:
        # dont_inherit: the runner's `from __future__ import annotations` must not leak in
        compiled = compile(code, "<input>", "exec", dont_inherit=True)
        _in_user_code = True
        try:
            exec(compiled, _globals)
        finally:
            _in_user_code = False
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException as exc:  # KeyboardInterrupt included: the runner must survive
        _print_exception(exc)
        return 1
    return 0


def run_query(conn: Conn, code: str) -> int:
    global _current
    saved = sys.stdout, sys.stderr, builtins.input, getpass.getpass
    sys.stdout, sys.stderr = ClientStream(conn, "stdout"), ClientStream(conn, "stderr")
    builtins.input, getpass.getpass = _input, _getpass
    _current = conn
    try:
        return _execute(code)
    finally:
        _current = None
        sys.stdout, sys.stderr, builtins.input, getpass.getpass = saved


# --- batch mode -------------------------------------------------------------------------------


def run_command(conn: Conn, cmd: str) -> int:
    global _child
    import subprocess  # on first use: see the imports

    try:
        # own process group, so SIGINT reaches the whole pipeline and not just the shell
        proc = subprocess.Popen(
            ["/bin/sh", "-c", cmd],
            cwd=_WORKDIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        conn.send("stderr", data=f"runner: cannot start /bin/sh: {exc}\n")
        return 127
    _child = proc
    try:
        _pump(conn, proc)
        code = proc.wait()
    finally:
        _child = None
    return 128 - code if code < 0 else code


def _pump(conn: Conn, proc: subprocess.Popen[bytes]) -> None:
    """Stream both pipes until EOF, or until the shell has exited and nothing more arrives
    (a background job left running may hold the pipes open forever)."""
    import codecs
    import selectors

    with selectors.DefaultSelector() as sel:
        for pipe, kind in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            assert pipe is not None
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            sel.register(pipe, selectors.EVENT_READ, (kind, decoder))
        while sel.get_map():
            events = sel.select(timeout=0.5)
            if not events and proc.poll() is not None:
                break
            for key, _ in events:
                kind, decoder = key.data
                chunk = os.read(key.fd, CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                # a multi-byte character split across reads is held back until complete
                text = decoder.decode(chunk, final=not chunk)
                if text:
                    conn.send(kind, data=text)
                    _tee(kind, text)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


MAX_COMPLETIONS = 100
_LAST_WORD = r"[A-Za-z_][\w.]*$"


def completions(code: str) -> list[str]:
    """What the last word of `code` could complete to (rlcompleter, as the REPL's tab key)."""
    import re
    import rlcompleter  # on first use: see the imports

    match = re.search(_LAST_WORD, code)
    if match is None:
        return []
    completer = rlcompleter.Completer(_globals)
    items: list[str] = []
    try:
        while len(items) < MAX_COMPLETIONS:
            item = completer.complete(match.group(), len(items))
            if item is None:
                break
            items.append(item)
    except Exception:  # an attribute lookup ran the session's code, which failed: no more
        pass
    return items


def run_batch(conn: Conn, req: dict[str, Any]) -> tuple[int, str]:
    """The batch steps' exit code, and why the last one died when it was not its own doing."""
    code, reason = 0, ""
    for field, done_kind in BATCH_STEPS:
        cmd = req.get(field)
        if cmd is None or cmd.strip() in ("", "*"):
            continue
        kills = oom_kills()
        code = run_command(conn, cmd)
        if code == 128 + signal.SIGKILL and kills is not None and (oom_kills() or 0) > kills:
            reason = f"killed: out of memory (memory limit {_memory_limit()})"
            conn.send("stderr", data=f"shipyard: {reason}\n")
            _tee("stderr", f"shipyard: {reason}\n")
        if done_kind is not None:
            conn.send(done_kind, exit_code=code)
            if code != 0:
                break
    return code, reason


# the container's own memory cgroup (cgroup v2, then v1), as Docker mounts it inside
_OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")
_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def oom_kills() -> int | None:
    """How many processes the out-of-memory killer ended in this container (None: unknown)."""
    for path in _OOM_FILES:
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def _memory_limit() -> str:
    for path in _LIMIT_FILES:
        try:
            with open(path) as f:
                return _size(int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return "unknown"


# --- serving ----------------------------------------------------------------------------------


def _parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """(op, request), or raise ValueError saying what is wrong."""
    try:
        req = json.loads(line.decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"request is not a JSON line: {exc}") from None
    if not isinstance(req, dict):
        raise ValueError("request must be a JSON object")
    op = req.get("op")
    if op == "query" and not isinstance(req.get("code"), str):
        raise ValueError('"query" needs "code" as a string')
    if op == "batch":
        for field, _ in BATCH_STEPS:
            if not isinstance(req.get(field), (str, type(None))):
                raise ValueError(f'"batch" field "{field}" must be a string or null')
    if op == "complete" and not isinstance(req.get("code"), str):
        raise ValueError('"complete" needs "code" as a string')
    if op not in ("ping", "query", "batch", "complete"):
        raise ValueError(f"unknown op {op!r}")
    return op, req


def serve_one(conn: Conn) -> None:
    line = conn.read_line()  # waits as long as the node has nothing to run
    if not line:
        return  # the node dropped the connection (it restarted, or gave up waiting): dial again
    try:
        op, req = _parse_request(line)
    except ValueError as exc:
        conn.send("stderr", data=f"runner: {exc}\n")
        conn.send("finished", exit_code=2)
        return
    if op == "ping":
        conn.send("pong", pid=os.getpid())
        return
    if op == "complete":
        conn.send("completions", items=completions(req["code"]))
        return
    code, reason = (run_query(conn, req["code"]), "") if op == "query" else run_batch(conn, req)
    if code != 0:
        for note in full_filesystems():
            conn.send("stderr", data=note)
            _tee("stderr", note)
    if reason:
        conn.send("finished", exit_code=code, reason=reason)
    else:
        conn.send("finished", exit_code=code)


def full_filesystems() -> list[str]:
    """A line for each of the kernel's writable filesystems that is (nearly) out of space."""
    notes, seen = [], set()
    for path in (_WORKDIR, "/tmp"):
        try:
            st, dev = os.statvfs(path), os.stat(path).st_dev
        except OSError:
            continue
        if dev in seen or st.f_blocks == 0:
            continue
        seen.add(dev)
        size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        if free < min(size * FULL_BELOW, FULL_BELOW_MAX):
            what = f"{_size(free)} free of {_size(size)}"
        elif st.f_files > 0 and st.f_favail < st.f_files * FULL_BELOW:
            what = f"{st.f_favail} of {st.f_files} inodes free"
        else:
            continue
        notes.append(
            f"shipyard: {path} is full ({what}): writes there fail with "
            "'No space left on device'; delete files to free some\n"
        )
    return notes


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.4g} {unit}"
        n /= 1024
    return f"{n:.4g} GiB"


def _on_sigint(signum: int, frame: Any) -> None:
    child = _child
    if child is not None:
        with contextlib.suppress(OSError):  # it may have just exited
            os.killpg(child.pid, signal.SIGINT)
    elif _in_user_code:
        raise KeyboardInterrupt
    # otherwise idle (or between steps): ignore, so a stray ^C never ends the runner


def dial(path: str) -> socket.socket:
    """A connection to the node, retrying (capped backoff) while nobody listens at `path`."""
    delay = REDIAL_FIRST
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            time.sleep(delay)
            delay = min(delay * 2, REDIAL_MAX)


def _log(message: str) -> None:
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"runner: {message}\n")
        sys.__stderr__.flush()


def _serve_relays(node_socket: str) -> None:
    """Keep one connection dialled to the node's relay socket; hand each stream it asks for to
    shipyard_relay.py in a thread of its own."""
    path = os.path.join(os.path.dirname(node_socket), RELAY_SOCKET)
    relay: types.ModuleType | None = None
    while True:
        sock = dial(path)
        line = _request_line(sock)
        if not line:
            sock.close()
            continue
        if relay is None:
            relay = _load_relay()
        threading.Thread(target=relay.serve_one, args=(sock, line, _WORKDIR), daemon=True).start()


def _request_line(sock: socket.socket) -> bytes:
    """A relay request. The node sends nothing more before the answer, so reading byte by byte
    takes nothing that belongs to the stream."""
    line = bytearray()
    try:
        while len(line) < 65536:
            byte = sock.recv(1)
            if not byte:
                break
            if byte == b"\n":
                return bytes(line)
            line += byte
    except OSError:
        pass
    return b""


def _load_relay() -> types.ModuleType:
    # Loaded on first use: the runner folder is read-only in the kernel, so the module would be
    # compiled at every start. Loaded by path and kept out of sys.modules, so no module of the
    # user's can collide with it.
    import importlib.util

    path = os.path.join(_OWN_DIR, "shipyard_relay.py")
    spec = importlib.util.spec_from_file_location("shipyard_relay", path)
    assert spec is not None and spec.loader is not None
    relay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(relay)
    return relay


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        _log(f"usage: {argv[0]} SOCKET_PATH")
        return 2
    signal.signal(signal.SIGINT, _on_sigint)
    sys.modules["__main__"] = _user_main
    # like the REPL: user code imports from the cwd, not from the runner's (read-only) directory
    sys.path[:] = ["", *(p for p in sys.path if p != _OWN_DIR)]
    _log(f"dialling {argv[1]} (pid {os.getpid()})")
    threading.Thread(target=_serve_relays, args=(argv[1],), daemon=True).start()
    while True:
        conn = Conn(dial(argv[1]))
        try:
            serve_one(conn)
        except Exception as exc:  # a runner bug must cost one request, not the kernel
            _log(f"internal error: {exc!r}")
        finally:
            conn.close()


_WORKDIR = os.getcwd()  # batch commands run here even if query code later calls os.chdir
_OWN_DIR = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    sys.exit(main(sys.argv))
