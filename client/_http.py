"""A minimal HTTP/1.1 client on one socket, for the fast `shipyard run` (client/fastrun.py).

`http.client` pulls in the email package to parse headers: about as much import time as the
rest of the fast path together; `socket` wraps its constants in enums and imports `selectors`,
so a plain connection is the C `_socket` module's (with our own buffered reader), and only TLS
takes the `socket` and `ssl` modules. This reads what our control plane sends and nothing more:
a status line, headers, and a body framed by Content-Length, chunked, or the connection's
end; kept alive unless either side says otherwise. Anything else is a `BadAnswer`.
"""

from __future__ import annotations

import _socket
import io

TYPE_CHECKING = False  # typing itself is not imported: start-up time
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

_MAX_LINE = 65536  # a status, header or chunk-size line longer than this is not an answer
_MAX_HEADERS = 100


class BadAnswer(OSError):
    """The server's answer is not HTTP/1.1 as we read it, or the connection ended inside it."""


class NoAnswer(BadAnswer):
    """The connection ended before the answer began (a kept-alive one the server let go)."""


def _open(host: str, port: int, timeout: float | None) -> _socket.socket:
    """socket.create_connection, but resolving `host` as bytes: getaddrinfo imports the idna
    codec (and unicodedata) for any str, even a plain ASCII name or an address."""
    name = host.encode("ascii") if host.isascii() else host.encode("idna")
    error: OSError = OSError(f"{host} has no address")
    for family, kind, proto, _, address in _socket.getaddrinfo(
        name, port, type=_socket.SOCK_STREAM
    ):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
        else:
            return sock
    raise error


class _SocketIO(io.RawIOBase):
    """The raw stream under `Connection.file`: socket.SocketIO without the socket module."""

    def __init__(self, sock: _socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)


class Response:
    """The status and headers of an answer; its body is read with `read` or `lines`."""

    def __init__(
        self, conn: Connection, version: str, status: int, reason: str, headers: dict[str, str]
    ) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-cased names; a repeated header keeps its last value
        tokens = headers.get("connection", "").lower().replace(",", " ").split()
        old = version == "HTTP/1.0" and "keep-alive" not in tokens  # 1.0 closes by default
        self.will_close = "close" in tokens or old
        self._length: int | None = None
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status in (204, 304):
            self._length = 0
        elif not self._chunked and "content-length" in headers:
            value = headers["content-length"].strip()
            if not value.isdigit():
                conn.close()
                raise BadAnswer(f"bad Content-Length: {value!r}")
            self._length = int(value)
        elif not self._chunked:
            self.will_close = True  # the body ends with the connection

    def chunks(self) -> Iterator[bytes]:
        """The body, piece by piece as it arrives; the connection is reusable after the last."""
        conn = self._conn
        if self._chunked:
            while size := self._chunk_size():
                yield self._exactly(size)
                if conn.readline() not in (b"\r\n", b"\n"):
                    conn.close()
                    raise BadAnswer("a chunk does not end with CRLF")
            while conn.readline() not in (b"\r\n", b"\n"):  # trailers, ignored
                pass
        elif self._length is not None:
            if self._length:
                yield self._exactly(self._length)
        else:
            while data := conn.file.read1(65536):
                yield data
        if self.will_close:
            self._conn.close()

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        """The body line by line (for an event stream), each with its line end."""
        pending = b""
        for data in self.chunks():
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"
        if pending:
            yield pending

    def _chunk_size(self) -> int:
        line = self._conn.readline().split(b";", 1)[0].strip()
        try:
            return int(line, 16)
        except ValueError:
            self._conn.close()
            raise BadAnswer(f"bad chunk size: {line[:40]!r}") from None

    def _exactly(self, size: int) -> bytes:
        data = self._conn.file.read(size)
        if len(data) < size:
            self._conn.close()
            raise BadAnswer(f"the connection ended {size - len(data)} bytes before the body did")
        return data


class Connection:
    """One HTTP/1.1 connection, opened again when a request finds it closed; a request at a
    time, each answer read before the next."""

    def __init__(self, host: str, port: int, *, tls: bool, timeout: float | None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.timeout = timeout
        self.sock: _socket.socket | None = None
        self._file: io.BufferedReader | None = None

    @property
    def file(self) -> io.BufferedReader:
        assert self._file is not None
        return self._file

    def connect(self) -> None:
        self.close()
        sock = _open(self.host, self.port, self.timeout)
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        if self.tls:
            import socket
            import ssl

            context = ssl.create_default_context()
            plain = socket.socket(sock.family, sock.type, sock.proto, sock.detach())
            sock = context.wrap_socket(plain, server_hostname=self.host)
        self.sock = sock
        self._file = io.BufferedReader(_SocketIO(sock))

    def close(self) -> None:
        if self.sock is not None:
            self.file.close()
            self.sock.close()
            self.sock = None

    def readline(self) -> bytes:
        line = self.file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            self.close()
            raise BadAnswer("a line of the answer is too long")
        if not line:
            self.close()
            raise BadAnswer("the connection ended inside the answer")
        return line

    def request(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Send a request (`headers` include Host) and read its answer's head."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        head = [f"{method} {target} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        status_line = self.file.readline(_MAX_LINE + 1)
        if not status_line:
            self.close()
            raise NoAnswer("the server closed the connection without answering")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
            self.close()
            raise BadAnswer(f"not an HTTP/1.1 answer: {status_line[:80]!r}")
        fields: dict[str, str] = {}
        while (line := self.readline()) not in (b"\r\n", b"\n"):
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or len(fields) >= _MAX_HEADERS:
                self.close()
                raise BadAnswer(f"bad header line: {line[:80]!r}")
            fields[name.strip().lower()] = value.strip()
        return Response(self, version, int(code), reason.strip(), fields)
