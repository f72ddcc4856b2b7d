"""The in-container runner, run as a real subprocess on the host (no Docker needed)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.runner import RUNNER_PATH

Item = dict[str, Any]
TIMEOUT = 5.0


class Client:
    """A tiny blocking node: takes the runner's next connection, for one request."""

    def __init__(self, listener: socket.socket) -> None:
        listener.settimeout(TIMEOUT)
        self.sock, _ = listener.accept()
        self.sock.settimeout(TIMEOUT)
        self.rfile = self.sock.makefile("rb")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, obj: Item) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self) -> Item | None:
        line = self.rfile.readline()
        return json.loads(line) if line else None

    def recv_until(self, kind: str) -> list[Item]:
        items: list[Item] = []
        while (item := self.recv()) is not None:
            items.append(item)
            if item["kind"] == kind:
                return items
        raise AssertionError(f"connection closed before {kind!r}: {items}")

    def rest(self) -> list[Item]:
        """Every item up to the runner closing the connection."""
        items = []
        while (item := self.recv()) is not None:
            items.append(item)
        return items

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def request(listener: socket.socket, obj: Item) -> list[Item]:
    with Client(listener) as client:
        client.send(obj)
        return client.rest()


def query(listener: socket.socket, code: str) -> list[Item]:
    return request(listener, {"op": "query", "code": code})


def merged(items: list[Item]) -> list[tuple[str, str]]:
    """Output items with consecutive writes to the same stream joined (print writes twice)."""
    out: list[tuple[str, str]] = []
    for item in items:
        if item["kind"] not in ("stdout", "stderr"):
            continue
        if out and out[-1][0] == item["kind"]:
            out[-1] = (item["kind"], out[-1][1] + item["data"])
        else:
            out.append((item["kind"], item["data"]))
    return out


def text(items: list[Item], kind: str) -> str:
    return "".join(item["data"] for item in items if item["kind"] == kind)


def finished(items: list[Item]) -> int:
    assert items[-1]["kind"] == "finished", items
    code: int = items[-1]["exit_code"]
    return code


def listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(4)
    return sock


class Runner:
    def __init__(self, proc: subprocess.Popen[bytes], path: Path, cwd: Path) -> None:
        self.proc, self.path, self.cwd = proc, path, cwd
        self.sock = listen(path)  # the node's side: the runner dials it

    def restart_listener(self) -> None:
        """As a restarting node does: close the socket, then listen at the same path again."""
        self.sock.close()
        self.path.unlink()
        self.sock = listen(self.path)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "r.sock"
    with (tmp_path / "runner.log").open("wb") as log:
        # started before anyone listens: the runner must keep dialling until someone does
        proc = subprocess.Popen(
            [sys.executable, str(RUNNER_PATH), str(path)], cwd=work, stdout=log, stderr=log
        )
    runner = None
    try:
        _wait_for_log(tmp_path / "runner.log", "dialling", proc)  # nobody listens yet
        runner = Runner(proc, path, work)
        assert request(runner.sock, {"op": "ping"})[0]["kind"] == "pong"
        yield runner
    finally:
        if runner is not None:
            runner.sock.close()
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_log(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in log.read_text():
        assert proc.poll() is None, "runner exited at start"
        assert time.monotonic() < deadline, f"runner never logged {text!r}"
        time.sleep(0.01)


def test_ping_answers_pid_and_logs_start(runner: Runner, tmp_path: Path) -> None:
    assert request(runner.sock, {"op": "ping"}) == [{"kind": "pong", "pid": runner.proc.pid}]
    log = (tmp_path / "runner.log").read_text()
    assert f"runner: dialling {runner.path} (pid {runner.proc.pid})" in log


def test_runner_dials_again_when_the_node_restarts(runner: Runner) -> None:
    assert finished(query(runner.sock, "kept = 42")) == 0
    runner.restart_listener()  # the runner's idle connection is reset with the old socket
    assert text(query(runner.sock, "print(kept)"), "stdout") == "42\n"
    # and when the node drops the idle connection it had accepted
    with Client(runner.sock):
        pass
    assert text(query(runner.sock, "print(kept)"), "stdout") == "42\n"


def test_state_persists_between_queries(runner: Runner) -> None:
    assert finished(query(runner.sock, "x = 41")) == 0
    items = query(runner.sock, "print(x + 1, __name__)")
    assert merged(items) == [("stdout", "42 __main__\n")]
    assert finished(items) == 0


def test_user_namespace_is_the_main_module(runner: Runner) -> None:
    code = "import pickle\nclass P: pass\nprint(type(pickle.loads(pickle.dumps(P()))).__name__)"
    assert text(query(runner.sock, code), "stdout") == "P\n"


def test_stdout_and_stderr_keep_their_order(runner: Runner) -> None:
    items = query(runner.sock, "import sys\nprint(1); print(2, file=sys.stderr); print(3)")
    assert merged(items) == [("stdout", "1\n"), ("stderr", "2\n"), ("stdout", "3\n")]
    assert finished(items) == 0


def test_exception_prints_traceback_without_runner_frames(runner: Runner) -> None:
    items = query(runner.sock, "1 / 0")
    err = text(items, "stderr")
    assert err.startswith("Traceback")
    assert 'File "<input>", line 1' in err
    assert "ZeroDivisionError" in err
    assert "runner.py" not in err
    assert finished(items) == 1


@pytest.mark.parametrize(
    ("call", "code", "err"),
    [("sys.exit(3)", 3, ""), ("sys.exit()", 0, ""), ("sys.exit('bye')", 1, "bye\n")],
)
def test_system_exit_sets_exit_code_and_interpreter_survives(
    runner: Runner, call: str, code: int, err: str
) -> None:
    items = query(runner.sock, f"import sys\ny = 5\n{call}\ny = 6")
    assert finished(items) == code
    assert text(items, "stderr") == err
    assert text(query(runner.sock, "print(y)"), "stdout") == "5\n"


def test_keyboard_interrupt_in_user_code_does_not_kill_runner(runner: Runner) -> None:
    items = query(runner.sock, "raise KeyboardInterrupt")
    assert "KeyboardInterrupt" in text(items, "stderr")
    assert finished(items) == 1
    assert finished(query(runner.sock, "pass")) == 0


def test_sigint_interrupts_a_running_query_and_is_ignored_when_idle(runner: Runner) -> None:
    runner.proc.send_signal(signal.SIGINT)  # idle: ignored
    with Client(runner.sock) as client:
        client.send({"op": "query", "code": "import time\nprint('go')\ntime.sleep(30)"})
        client.recv_until("stdout")
        runner.proc.send_signal(signal.SIGINT)
        items = client.rest()
        assert "KeyboardInterrupt" in text(items, "stderr")
        assert finished(items) == 1
        assert runner.proc.poll() is None


def test_input_round_trip(runner: Runner) -> None:
    with Client(runner.sock) as client:
        client.send({"op": "query", "code": "name = input('Name? ')\nprint('hi', name)"})
        waiting = client.recv_until("waiting-input")
        assert waiting == [{"kind": "waiting-input", "prompt": "Name? ", "password": False}]
        client.send({"op": "input", "text": "Ada\n"})
        items = client.rest()
        assert merged(items) == [("stdout", "hi Ada\n")]
        assert finished(items) == 0


def test_getpass_asks_for_a_password(runner: Runner) -> None:
    with Client(runner.sock) as client:
        client.send({"op": "query", "code": "import getpass\nprint(len(getpass.getpass('PW: ')))"})
        assert client.recv_until("waiting-input")[-1] == {
            "kind": "waiting-input",
            "prompt": "PW: ",
            "password": True,
        }
        client.send({"op": "input", "text": "secret"})
        assert text(client.rest(), "stdout") == "6\n"


def test_disconnect_while_waiting_for_input_raises_eof(runner: Runner) -> None:
    with Client(runner.sock) as client:
        code = "try:\n    input('?')\nexcept EOFError:\n    got_eof = True"
        client.send({"op": "query", "code": code})
        client.recv_until("waiting-input")
    assert text(query(runner.sock, "print(got_eof)"), "stdout") == "True\n"


def test_disconnect_mid_run_keeps_running_then_serves_next(runner: Runner) -> None:
    with Client(runner.sock) as client:
        code = "for i in range(200):\n    print('x' * 5000)\ndone = i"
        client.send({"op": "query", "code": code})
        client.recv_until("stdout")
    # the runner dials again only once the 1 MB of orphaned output is discarded
    assert text(query(runner.sock, "print(done)"), "stdout") == "199\n"


def test_batch_build_and_exec(runner: Runner) -> None:
    items = request(
        runner.sock,
        {
            "op": "batch",
            "clean": "true",
            "build": "echo building; echo warn >&2",
            "exec": "pwd; echo err >&2; exit 7",
        },
    )
    kinds = [i["kind"] for i in items if i["kind"] not in ("stdout", "stderr")]
    assert kinds == ["clean-finished", "build-finished", "finished"]
    assert items[0] == {"kind": "clean-finished", "exit_code": 0}
    assert {"kind": "build-finished", "exit_code": 0} in items
    assert text(items, "stdout") == f"building\n{runner.cwd}\n"
    assert text(items, "stderr") == "warn\nerr\n"
    assert finished(items) == 7


def test_batch_failing_build_stops_before_exec(runner: Runner) -> None:
    items = request(
        runner.sock, {"op": "batch", "clean": None, "build": "exit 5", "exec": "touch ran"}
    )
    assert items == [
        {"kind": "build-finished", "exit_code": 5},
        {"kind": "finished", "exit_code": 5},
    ]
    assert not (runner.cwd / "ran").exists()


def test_batch_decodes_split_utf8_and_reports_signal_death(runner: Runner) -> None:
    # "é" is \303\251; the sleep makes the runner read its two bytes separately
    cmd = r"printf '\303'; sleep 0.05; printf '\251\n'; kill -9 $$"
    items = request(runner.sock, {"op": "batch", "clean": None, "build": "*", "exec": cmd})
    assert text(items, "stdout") == "é\n"
    assert finished(items) == 128 + 9


def test_batch_without_commands_finishes_zero(runner: Runner) -> None:
    items = request(runner.sock, {"op": "batch", "clean": None, "build": "", "exec": None})
    assert items == [{"kind": "finished", "exit_code": 0}]


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"[1, 2]\n",
        b'{"op": "dance"}\n',
        b'{"op": "query", "code": 5}\n',
        b'{"op": "batch", "exec": ["ls"]}\n',
    ],
)
def test_malformed_request_exits_2(runner: Runner, line: bytes) -> None:
    with Client(runner.sock) as client:
        client.sock.sendall(line)
        items = client.rest()
    assert len(items) == 2
    assert items[0]["kind"] == "stderr"
    assert items[0]["data"].startswith("runner: ")
    assert items[1] == {"kind": "finished", "exit_code": 2}
    assert request(runner.sock, {"op": "ping"})[0]["kind"] == "pong"


def test_runner_log_holds_the_session_output(runner: Runner, tmp_path: Path) -> None:
    query(runner.sock, "print('to the log')")
    request(runner.sock, {"op": "batch", "clean": None, "build": None, "exec": "echo batch-out"})
    log = (tmp_path / "runner.log").read_text()
    assert "to the log\n" in log
    assert "batch-out\n" in log
    assert "internal error" not in log


def test_user_code_imports_from_the_cwd(runner: Runner) -> None:
    (runner.cwd / "mymod.py").write_text("VALUE = 'from cwd'\n")
    assert text(query(runner.sock, "import mymod\nprint(mymod.VALUE)"), "stdout") == "from cwd\n"


def test_complete_offers_names_and_attributes_of_the_query_globals(runner: Runner) -> None:
    assert finished(query(runner.sock, "import json as my_json_module\nmy_value = 1")) == 0
    [names] = request(runner.sock, {"op": "complete", "code": "x = my_"})
    assert names == {"kind": "completions", "items": ["my_json_module", "my_value"]}
    [attrs] = request(runner.sock, {"op": "complete", "code": "my_json_module.dum"})
    assert attrs["items"] == ["my_json_module.dump(", "my_json_module.dumps("]
    [nothing] = request(runner.sock, {"op": "complete", "code": "1 + "})
    assert nothing["items"] == []
