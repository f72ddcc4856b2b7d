"""The fast `shipyard run` (client/fastrun.py) and its HTTP client (client/_http.py), against a
raw scripted server: exact output and exit codes, and one line for a server that answers
badly. The happy paths against the real control plane are in tests/compat."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import wire
from client import _http

ACCESS_KEY, SECRET_KEY = "AKIAFAST", "fast/secret"


def answer(status: str, body: bytes, *, chunked: bool = False, head: str = "") -> bytes:
    """A raw HTTP/1.1 answer; `chunked` sends `body` in two chunks (with an extension and a
    trailer, which a reader must skip)."""
    if chunked:
        half = len(body) // 2
        framed = b"%x;ext=1\r\n%s\r\n" % (half, body[:half])
        framed += b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(body) - half, body[half:])
        head += "Transfer-Encoding: chunked\r\n"
    else:
        framed = body
        head += f"Content-Length: {len(body)}\r\n"
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{head}\r\n".encode() + framed


def ok(value: object, *, chunked: bool = False) -> bytes:
    return answer("200 OK", json.dumps(value).encode(), chunked=chunked)


class Closing(bytes):
    """An answer after which the server closes the connection (Closing(): without answering)."""


GONE = answer("404 Not Found", b'{"title": "No such session."}')
EVENTS = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class Scripted:
    """A server on 127.0.0.1 that answers `METHOD /path` (else any `METHOD`) with the next of
    its scripted raw answers and records each request. An event stream is held open, saying
    nothing, until the client goes."""

    def __init__(self, script: dict[str, list[bytes]]) -> None:
        self.script = script
        self.requests: list[tuple[str, str, dict[str, str], bytes, int]] = []  # ..., connection
        self.changed = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def env(self) -> dict[str, str]:
        endpoint = f"http://127.0.0.1:{self.port}"
        ours = {"ENDPOINT": endpoint, "ACCESS_KEY": ACCESS_KEY, "SECRET_KEY": SECRET_KEY}
        environ = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
        return environ | {f"SHIPYARD_{k}": v for k, v in ours.items()}

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.requests) >= count, 10), self.requests

    def _accept(self) -> None:
        for number in range(1000):
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn, conn.makefile("rb") as file:
            while start := file.readline():
                method, target, _ = start.decode().split(" ")
                headers = {}
                while (line := file.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.lower()] = value.strip()
                body = file.read(int(headers.get("content-length", "0")))
                key = f"{method} {target.split('?')[0]}"
                with self.changed:
                    self.requests.append((method, target, headers, body, number))
                    self.changed.notify_all()
                    if key.startswith("GET /events/"):
                        reply = EVENTS
                    else:
                        reply = self.script[key if key in self.script else method].pop(0)
                conn.sendall(reply)
                if reply is EVENTS:
                    conn.recv(1)  # until the client closes it
                if isinstance(reply, Closing):
                    return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted({})
    try:
        yield scripted
    finally:
        scripted.close()


def fast_run(server: Scripted, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shipyard", "run", *args]
    return subprocess.run(command, env=server.env(), capture_output=True, text=True, timeout=60)


def test_output_and_exit_status_are_exact_on_one_kept_alive_connection(server: Scripted) -> None:
    first_chunk = {"status": "continued", "console": [["stdout", "4"]], "runId": "r"}
    last = [["stdout", "2\n"], ["stderr", "careful\n"]]
    server.script = {
        "POST /session": [ok({"sessionId": "s1", "status": "RUNNING"}, chunked=True)],
        "POST /session/s1": [
            ok({"result": first_chunk}),
            ok({"result": {"status": "finished", "exitCode": 3, "console": last}}, chunked=True),
        ],
        "DELETE": [ok({})],
    }
    done = fast_run(server, "-c", "print(42)")
    assert (done.returncode, done.stdout, done.stderr) == (3, "42\n", "careful\n")
    server.wait_for(4)  # the DELETE, from the child left to remove the session
    ours = [r for r in server.requests if not r[1].startswith("/events/")]
    create, first, again, delete = ours
    assert [(r[0], r[1]) for r in (create, first, again)] == [
        ("POST", "/session"),
        ("POST", "/session/s1"),
        ("POST", "/session/s1"),
    ]
    assert create[4] == first[4] == again[4] != delete[4]  # one connection, kept alive
    name = json.loads(create[3])["name"]
    assert delete[:2] == ("DELETE", f"/session/{name}")
    assert json.loads(first[3]) == {
        "mode": "query",
        "code": "print(42)",
        "runId": None,
        "options": {},
    }
    assert json.loads(again[3])["mode"] == "continue"
    headers = create[2]
    assert headers["host"] == f"127.0.0.1:{server.port}"
    expected = wire.sign(
        method="POST",
        rel_url="/session",
        date=headers["date"],
        host=headers["host"],
        content_type="application/json",
        version=wire.API_VERSION,
        secret_key=SECRET_KEY,
    )
    assert headers["authorization"].endswith(f"credential={ACCESS_KEY}:{expected}")


@pytest.mark.parametrize(
    ("create", "message"),
    [
        (
            [answer("502 Bad Gateway", b"<html>upstream\n down</html>")],
            "Bad Gateway (502): <html>upstream down</html>",
        ),
        ([answer("200 OK", b"not json")], "sent a non-JSON answer to POST /session (status 200)"),
        (
            [Closing(answer("201 Created", b'{"sessionId": "s1"}')[:-4])],
            "answered badly: the connection ended 4 bytes before the body did",
        ),
        (
            [Closing(), Closing()],  # the first, on the kept-alive connection, is sent again
            "closed the connection without answering",
        ),
        ([b"SSH-2.0-OpenSSH_9.2\r\n"], "answered badly: not an HTTP/1.1 answer: b'SSH-2.0"),
    ],
)
def test_a_server_that_answers_badly_is_one_line_and_exit_1(
    server: Scripted, create: list[bytes], message: str
) -> None:
    sent = ["POST"] * len(create) + ["DELETE"]
    server.script = {"POST /session": create, "DELETE": [GONE]}
    done = fast_run(server, "-c", "1")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()  # and no warning: the removal's 404 is expected
    assert line.startswith("shipyard: error: ")
    assert message in line
    assert [r[0] for r in server.requests if r[0] != "GET"] == sent


def test_http_reads_chunked_lines_bodies_to_the_close_and_says_what_is_wrong(
    server: Scripted,
) -> None:
    server.script = {
        "GET /a": [answer("200 OK", b"event: x\ndata: 1\n\nevent: y\n", chunked=True)],
        "GET /b": [Closing(b"HTTP/1.0 200 OK\r\n\r\nall of it")],
        "GET /c": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    }
    conn = _http.Connection("127.0.0.1", server.port, tls=False, timeout=10)
    headers = {"Host": "h"}
    first = conn.request("GET", "/a", headers, b"")
    assert list(first.lines()) == [b"event: x\n", b"data: 1\n", b"\n", b"event: y\n"]
    assert not first.will_close
    second = conn.request("GET", "/b", headers, b"")  # kept alive
    assert second.will_close  # HTTP/1.0 without a length: the body ends with the connection
    assert second.read() == b"all of it"
    third = conn.request("GET", "/c", headers, b"")  # on a new connection
    with pytest.raises(_http.BadAnswer, match="bad chunk size: b'zz'"):
        third.read()
    assert conn.sock is None
    assert [r[4] for r in server.requests] == [0, 0, 1]


def test_nothing_slow_is_imported_before_the_first_request(server: Scripted) -> None:
    # the modules client/_lean.py and client/_http.py stand in for, and the SDK's: a
    # `shipyard run` that sends its first request with any of them loaded has lost its start-up
    heavy = [
        "re", "enum", "json", "hmac", "_hashlib", "socket", "signal", "threading", "datetime",
        "urllib.parse", "collections", "functools", "typing", "dataclasses", "http.client",
        "email", "encodings.idna", "click", "httpx", "trio", "pydantic", "wire", "client.sdk",
        "shipyard.cli",
    ]  # fmt: skip
    code = (
        "import os, sys\n"
        "from client import _http\n"
        "def request(*args):\n"
        f"    print([m for m in {heavy!r} if m in sys.modules], flush=True)\n"
        "    os._exit(0)\n"
        "_http.Connection.request = request\n"
        "sys.argv = ['shipyard', 'run', '-c', 'print(1)']\n"
        "from shipyard._main import main\n"
        "main()\n"
    )
    env = server.env() | {"SHIPYARD_ENDPOINT": f"http://localhost:{server.port}"}  # resolved
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout == "[]\n", done.stderr


@pytest.mark.parametrize(
    "value",
    [
        {"name": "run-0a", "resources": {"cpu": "1", "mem": "256m"}, "maxWaitSeconds": 2.5},
        {"code": 'print("é\\u2028\t\\\\")\x00\x1f\x7f 🐍 \ud800', "runId": None, "options": {}},
        [True, False, None, 0, -7, 10**30, 0.1, 1e300, -0.0, float("inf"), float("-inf"), []],
        {"nested": [{"a": [1, {"b": "c"}]}, ()], "empty": {}},
    ],
)
def test_lean_json_is_json_dumps(value: object) -> None:
    from client import _lean

    assert _lean.dumps(value) == json.dumps(value)
    assert _lean.dumps(float("nan")) == json.dumps(float("nan"))


def test_lean_hmac_and_date_are_the_standard_librarys() -> None:
    import hmac
    from datetime import UTC, datetime, timedelta

    from client import _lean

    for key in (b"", b"k", b"s" * 64, b"s" * 65, bytes(range(256))):
        for message in (b"", b"20261128", b"x" * 1000):
            assert _lean.hmac_sha256(key, message) == hmac.new(key, message, "sha256").digest()
    date = _lean.utc_now()
    parsed = datetime.fromisoformat(date)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - parsed) < timedelta(seconds=5)
    assert parsed.isoformat(timespec="microseconds") == date


@pytest.mark.parametrize(
    ("endpoint", "plain"),
    [
        ("http://127.0.0.1:8081", True),
        ("https://Shipyard.Example.com", True),
        ("http://localhost:8081/prefix/", True),
        ("http://[::1]:8081/api", True),
        ("https://[fe80::1]", True),
        ("http://h:0", True),
        ("http://h:65536", False),
        ("http://h:", False),
        ("http://user@h", False),
        ("http://h/p?q=1", False),
        ("http://h/%41", False),
        ("HTTP://h", False),
        ("http://bücher.example", False),
        ("http://[::1", False),
        ("http://[::1]x", False),
        ("ftp://h", False),
        ("http://", False),
    ],
)
def test_plain_endpoints_split_as_urlsplit_reads_them(endpoint: str, plain: bool) -> None:
    from urllib.parse import urlsplit

    from client.config import split_endpoint

    split = split_endpoint(endpoint)
    assert (split is not None) == plain
    if split is not None:
        parts = urlsplit(endpoint)
        assert split == (parts.scheme == "https", parts.hostname, parts.port, parts.path)
