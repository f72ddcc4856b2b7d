"""`shipyard run` on the standard library alone, for the common case: code in, output out.

Importing the SDK (httpx, trio, click, pydantic through `wire`) costs far more than a warm
session takes to run `print(1)`, so `shipyard run` with only -i, -c/--exec, -r, -e and --max-wait
goes through here (shipyard/_main.py); anything else (files, mounts, dependencies, --help, an
option written another way, a bad value) returns None and the click command does it all, with
its own messages.

Round trips: `POST /session`, held by the server until the session runs; the polling execute
API (`POST /session/<id>`), one call for a run that prints and ends within its first chunk; and
`DELETE /session/<name>`, sent by a child process left to finish it once our output is written,
so the user does not wait for the container's removal. While the session waits to be placed,
a second connection listens to its events and writes why to stderr, as the SDK path does.
"""

from __future__ import annotations

import _socket
import _thread
import os
import sys

from client import _http, _lean, _output
from client.config import ClientConfig, split_endpoint
from client.errors import APIError, ClientError, ConfigError

# Start-up time: typing, dataclasses and http.client are not imported; nor, before the first
# request, the modules that import `re` or `enum` (json, urllib.parse, signal, socket,
# threading) or OpenSSL (hmac): client/_lean.py does what they did, and `json` is imported
# while the control plane works on the first request.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any
else:
    import _signal  # `signal` itself makes an enum of every constant

API_VERSION = "v7.20230615"  # wire.API_VERSION (importing wire would import pydantic)
USER_AGENT = "Shipyard Client for Python"
BATCH_DEFAULTS = {"clean": "*", "build": "*", "buildLog": False}
REASONS_AFTER = 0.3  # seconds a create may take before we ask why it waits
REMOVE_TIMEOUT = 30.0
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # of b"": no body
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}
_VALUED = {
    "-i": "image", "--image": "image", "-c": "code", "--code": "code", "--exec": "exec",
    "-r": "resource", "--resource": "resource", "-e": "env", "--env": "env",
    "--max-wait": "max_wait",
}  # fmt: skip


class RunArgs:
    def __init__(self) -> None:
        self.image = "python"
        self.code: str | None = None
        self.exec_cmd: str | None = None
        self.resources: dict[str, str] = {}
        self.environ: dict[str, str] = {}
        self.max_wait = 0.0


def parse_pair(item: str, *, resource: bool) -> tuple[str, str] | None:
    """KEY=VALUE as `-r`/`-e` take it (a bare mem number means MiB); None when malformed."""
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or (resource and not value):
        return None
    if resource and key == "mem" and value.isdigit():
        value += "m"  # as backend.ai's CLI does
    return key, value


def parse(argv: list[str]) -> RunArgs | None:
    """The arguments after `run`, when they are all this path handles and valid."""
    args = RunArgs()
    if len(argv) % 2:
        return None
    for option, value in zip(argv[::2], argv[1::2], strict=True):
        what = _VALUED.get(option)
        if what == "image":
            args.image = value
        elif what == "code" and args.code is None:
            args.code = value
        elif what == "exec" and args.exec_cmd is None:
            args.exec_cmd = value
        elif what in ("resource", "env"):
            pair = parse_pair(value, resource=what == "resource")
            if pair is None:
                return None
            target = args.resources if what == "resource" else args.environ
            target[pair[0]] = pair[1]
        elif what == "max_wait":
            try:
                args.max_wait = float(value)
            except ValueError:
                return None
            if not args.max_wait >= 0:
                return None
        else:
            return None
    if (args.code is None) == (args.exec_cmd is None):
        return None  # both (an error) or neither (files decide): the click command's
    return args


def main(argv: list[str]) -> int | None:
    """Run `shipyard run ARGV`; its exit status, or None to leave it to the click command."""
    args = parse(argv)
    if args is None:
        return None
    try:
        config = ClientConfig.from_env()
    except ConfigError:
        return None
    if split_endpoint(config.endpoint) is None:
        return None  # an endpoint written another way: the SDK reads it
    api = Connection(config)
    try:
        api.connect()
    except OSError:
        return None  # nothing was sent: the SDK path says why it cannot connect
    name = f"run-{os.urandom(5).hex()}"
    _signal.signal(_signal.SIGTERM, _terminated)
    try:
        status = _run(api, args, name)
    except KeyboardInterrupt:
        _remove(config, name)
        return 130
    except _Terminated:
        _remove(config, name)
        return 128 + _signal.SIGTERM
    except (ClientError, OSError) as exc:
        _remove(config, name)
        _output.write(sys.stderr, f"shipyard: error: {_describe(exc, config)}\n")
        return 1
    _remove_later(config, name)
    return status


class _Terminated(Exception):
    pass


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _run(api: Connection, args: RunArgs, name: str) -> int:
    reasons = _Reasons(api.config, name)
    try:
        created = api.create(args, name)
    finally:
        reasons.stop()
    session_id = str(created["sessionId"])
    status = created.get("status", "RUNNING")
    if status != "RUNNING":
        info = created.get("statusInfo") or ""
        if not info:
            try:
                info = str(api.call("GET", f"/session/{session_id}").get("statusInfo") or "")
            except (ClientError, OSError):
                info = ""
        if status == "TIMEOUT":
            raise ClientError(f"session {name} did not start within {args.max_wait:g} s: {info}")
        raise ClientError(f"session {name} is {status}" + (f": {info}" if info else ""))
    if args.code is not None:
        body: dict[str, Any] = {"mode": "query", "code": args.code, "runId": None, "options": {}}
    else:
        body = {"mode": "batch", "code": "", "runId": None}
        body["options"] = {**BATCH_DEFAULTS, "exec": args.exec_cmd}
    path = f"/session/{session_id}"
    while True:
        frame = api.call("POST", path, body)["result"]
        exit_status = _output.show_frame(frame)
        if exit_status is not None:
            return exit_status
        run_id = frame.get("runId")
        if frame.get("status") == "waiting-input":
            body = {"mode": "input", "code": _output.read_answer(frame), "runId": run_id}
        else:
            body = {"mode": "continue", "code": "", "runId": run_id}


def _describe(exc: BaseException, config: ClientConfig) -> str:
    if isinstance(exc, ClientError):
        return str(exc)
    if isinstance(exc, _http.NoAnswer):
        return f"the control plane at {config.endpoint} closed the connection without answering"
    if isinstance(exc, _http.BadAnswer):
        return f"the control plane at {config.endpoint} answered badly: {exc}"
    return f"the connection to the control plane at {config.endpoint} broke: {exc!r}"


class Connection:
    """Signed requests on one kept-alive connection."""

    def __init__(self, config: ClientConfig, timeout: float | None = None) -> None:
        self.config = config
        parts = split_endpoint(config.endpoint)
        if parts is None:
            raise ConfigError(f"not a plain http:// or https:// endpoint: {config.endpoint!r}")
        https, host, port, path = parts
        self._prefix = path.rstrip("/")
        self._conn = _http.Connection(
            host, port or (443 if https else 80), tls=https, timeout=timeout
        )
        host = f"[{host}]" if ":" in host else host
        self.signing_host = host if port is None else f"{host}:{port}"
        self._idle = False  # open with nothing in flight: the server may close it meanwhile

    def connect(self) -> None:
        self._conn.connect()
        self._idle = True

    def close(self) -> None:
        self._conn.close()

    def abort(self) -> None:
        """End the connection under a read in another thread (`close` would wait for it)."""
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                return  # already gone (contextlib.suppress would cost an import)

    def send(self, method: str, path: str, body: Any = None) -> _http.Response:
        self._idle, idle = False, self._idle
        rel_url = self._prefix + path
        payload = b"" if body is None else _lean.dumps(body).encode()
        content_type = "text/plain" if body is None else "application/json"
        if method == "GET":
            content_type = "application/octet-stream"
        date = _lean.utc_now()
        signature = sign(method, rel_url, date, self.signing_host, content_type, self.config)
        headers = {
            "Host": self.signing_host,
            "Content-Type": content_type,
            "Date": date,
            "X-BackendAI-Version": API_VERSION,
            "Authorization": f"BackendAI signMethod=HMAC-SHA256, "
            f"credential={self.config.access_key}:{signature}",
            "User-Agent": USER_AGENT,
        }
        try:
            return self._conn.request(method, rel_url, headers, payload)
        except (BrokenPipeError, ConnectionResetError, _http.NoAnswer):
            if not idle:
                raise
        # the server had closed the kept-alive connection before our request: not sent, so
        # sent again on a new one
        self._conn.connect()
        return self._conn.request(method, rel_url, headers, payload)

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """The JSON answer; APIError for a non-2xx one."""
        response = self.send(method, path, body)
        import json  # while the control plane answers (the first request: json's import time)

        data = response.read()
        self._idle = not response.will_close
        if not 200 <= response.status < 300:
            raise APIError.from_response(response.status, response.reason, data)
        try:
            answer = json.loads(data) if data else {}
        except ValueError as exc:
            raise ClientError(
                f"the control plane at {self.config.endpoint} sent a non-JSON answer"
                f" to {method} {path} (status {response.status})"
            ) from exc
        return answer if isinstance(answer, dict) else {}

    def create(self, args: RunArgs, name: str) -> dict[str, Any]:
        machine = os.uname().machine.lower()
        body: dict[str, Any] = {
            "tag": None,
            "name": name,
            "config": {
                "mounts": [],
                "environ": args.environ,
                "resources": args.resources,
                "resource_opts": {},
                "scalingGroup": None,
                "mount_map": {},
                "preopen_ports": [],
            },
            "dependencies": [],
            "callback_url": None,
            "architecture": _ARCH_ALIASES.get(machine, machine),
            "clusterSize": 1,
            "clusterMode": "single-node",
            "starts_at": None,
            "bootstrap_script": None,
            "owner_access_key": None,
            "domain": "default",
            "group": "default",
            "type": "interactive",
            "enqueueOnly": False,
            "maxWaitSeconds": args.max_wait,
            "reuseIfExists": False,
            "startupCommand": None,
            "image": args.image,
        }
        return self.call("POST", "/session", body)


def sign(
    method: str, rel_url: str, date: str, host: str, content_type: str, config: ClientConfig
) -> str:
    """wire.sign for SHA-256, for a UTC `date` in ISO format as `_lean.utc_now` writes it
    (tests/client keep them equal)."""
    day = date[:10].replace("-", "")  # YYYY-MM-DD...: the calendar day, UTC
    string_to_sign = "\n".join(
        [
            method.upper(),
            rel_url,
            date,
            f"host:{host}",
            f"content-type:{content_type.lower()}",
            f"x-backendai-version:{API_VERSION}",
            EMPTY_SHA256,
        ]
    )
    k1 = _lean.hmac_sha256(config.secret_key.encode(), day.encode())
    k2 = _lean.hmac_sha256(k1, host.encode())
    return _lean.hmac_sha256(k2, string_to_sign.encode()).hex()


class _Reasons:
    """Writes each new reason why session `name` waits (its event stream starts with the
    current one) from a thread of its own, from REASONS_AFTER on until `stop` (the create was
    answered). A bare `_thread` thread (daemonic: exit does not wait for it), not `threading`,
    which imports functools and collections before the first request."""

    def __init__(self, config: ClientConfig, name: str) -> None:
        self._api = Connection(config)
        self._name = name
        self._lock = _thread.allocate_lock()
        self._stopped = False
        self._stop = _thread.allocate_lock()
        self._stop.acquire()  # released by `stop`
        _thread.start_new_thread(self._wait, ())

    def stop(self) -> None:
        self._stop.release()
        with self._lock:
            self._stopped = True
            self._api.abort()  # ends the stream's read, if it is open

    def _wait(self) -> None:
        if not self._stop.acquire(timeout=REASONS_AFTER):
            self._show()

    def _show(self) -> None:
        import json
        from urllib.parse import quote

        shown = None
        try:
            with self._lock:
                if self._stopped:
                    return
                self._api.connect()
                query = f"?sessionName={quote(self._name, safe='')}&scope=session"
                response = self._api.send("GET", "/events/session" + query)
            if response.status != 200:
                return
            event = ""
            for raw in response.lines():
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:") and event == "session_enqueued":
                    data = json.loads(line.partition(":")[2])
                    reason = data.get("reason") if isinstance(data, dict) else None
                    # "enqueued" is its creation, not a reason to wait
                    if reason not in (None, "", "enqueued", shown) and not self._stopped:
                        shown = reason
                        text = f"shipyard: session {self._name} is pending: {reason}\n"
                        _output.write(sys.stderr, text)
        except Exception:  # closed under it once the create was answered
            return  # the reasons are a courtesy: the create's answer says what matters


def _remove(config: ClientConfig, name: str) -> None:
    """DELETE the temporary session now; a warning if that fails (404: never created)."""
    from urllib.parse import quote

    api = Connection(config, timeout=REMOVE_TIMEOUT)
    try:
        api.connect()
        api.call("DELETE", f"/session/{quote(name, safe='')}")
    except APIError as exc:
        if exc.status != 404:
            _warn(name, exc)
    except (ClientError, OSError) as exc:
        _warn(name, exc)
    finally:
        api.close()


def _warn(name: str, problem: BaseException) -> None:
    _output.write(sys.stderr, f"shipyard: warning: could not remove session {name}: {problem}\n")


def _remove_later(config: ClientConfig, name: str) -> None:
    """Remove the session from a child process, so that our exit (and the user) need not wait
    for the container to go. The child keeps stderr only on a terminal, where a warning is
    seen; in a pipe it would hold the reader until it is done."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        if not os.isatty(2):
            os.dup2(devnull, 2)
        _remove(config, name)
    finally:
        os._exit(0)
