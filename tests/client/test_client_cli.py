"""The `shipyard run/session/admin/image` commands through click's CliRunner, against the fake
control plane."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from client_fakes import FakeAPI, problem

from shipyard.cli import main


def shipyard(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def one_error_line(result: Result) -> str:
    """The command failed with exactly one `shipyard: error:` line on stderr, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("shipyard: error: ")
    return lines[0].removeprefix("shipyard: error: ")


def test_run_code_creates_executes_and_removes_a_temporary_session(fake_api: FakeAPI) -> None:
    fake_api.frames = [
        {"status": "continued", "console": [["stdout", "4"], ["stderr", "careful\n"]]},
        {"status": "finished", "console": [["stdout", "2\n"]], "exitCode": 0},
    ]
    result = shipyard("run", "-c", "print(42)", "-r", "cpu=1", "-r", "mem=256", "-e", "A=b=c")
    assert result.exit_code == 0, result.output
    assert result.stdout == "42\n"
    assert result.stderr == "careful\n"
    (create,) = [r for r in fake_api.requests if r.target == "/session"]
    body = json.loads(create.body)
    name = body["name"]
    assert re.fullmatch(r"run-[0-9a-f]{10}", name)
    assert body["image"] == "python"
    assert body["config"]["resources"] == {"cpu": "1", "mem": "256m"}
    assert body["config"]["environ"] == {"A": "b=c"}
    assert body["reuseIfExists"] is False
    sid = next(iter(fake_api.sessions))
    assert fake_api.calls() == [
        ("GET", "/events/session?scope=session"),  # to show why it waits, if it does
        ("POST", "/session"),
        ("WS", f"/stream/session/{sid}/execute"),
        ("DELETE", f"/session/{name}"),
    ]
    assert fake_api.first_frames == [{"code": "print(42)", "mode": "query", "options": {}}]


def test_run_exec_uploads_files_runs_batch_and_passes_the_exit_code_through(
    fake_api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.py").write_text("import sub.a\n")
    (tmp_path / "sub" / "a.py").write_text("raise SystemExit(3)\n")
    fake_api.frames = [
        {"status": "build-finished", "console": [], "exitCode": 0},
        {"status": "finished", "console": [["stderr", "bye\n"]], "exitCode": 3},
    ]
    result = shipyard("run", "-i", "python:3.11", "--exec", "python x.py", "x.py", "sub/a.py")
    assert result.exit_code == 3
    assert result.stderr == "bye\n"
    (upload,) = [r for r in fake_api.requests if r.target.endswith("/upload")]
    assert [(f[0], f[1], f[2]) for f in upload.files] == [
        ("src", "x.py", "application/octet-stream"),
        ("src", "sub/a.py", "application/octet-stream"),
    ]
    assert fake_api.first_frames == [
        {
            "code": "",
            "mode": "batch",
            "options": {"clean": "*", "build": "*", "buildLog": False, "exec": "python x.py"},
        }
    ]
    assert fake_api.requests[-1].method == "DELETE"


def test_run_answers_input_prompts_from_stdin(fake_api: FakeAPI) -> None:
    fake_api.frames = [
        {"status": "waiting-input", "console": [], "options": {"prompt": "name? "}},
        {"status": "finished", "console": [["stdout", "hi\n"]], "exitCode": 0},
    ]
    result = shipyard("run", "-c", "input('name? ')", input="Ann\nmore\n")
    assert result.exit_code == 0
    assert result.stdout == "name? hi\n"
    assert fake_api.inputs == ["Ann"]


def test_a_session_that_fails_to_start_is_reported_and_still_removed(fake_api: FakeAPI) -> None:
    fake_api.create_status = "ERROR"
    fake_api.create_status_info = "failed to create the container: out of memory"
    result = shipyard("run", "-c", "1")
    assert result.exit_code == 1
    message = one_error_line(result)
    assert re.fullmatch(
        r"session run-[0-9a-f]{10} is ERROR: failed to create the container: out of memory",
        message,
    )
    assert [m for m, _ in fake_api.calls()] == ["GET", "POST", "GET", "DELETE"]


def test_run_without_code_or_exec_leaves_the_exec_command_to_the_image(
    fake_api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "main.py").write_text("print(1)\n")
    result = shipyard("run", "main.py")
    assert result.exit_code == 0, result.output
    assert fake_api.first_frames == [
        {
            "code": "",
            "mode": "batch",
            "options": {"clean": "*", "build": "*", "buildLog": False, "exec": "*"},
        }
    ]


def test_max_wait_is_sent_and_a_timeout_says_why_it_waited(fake_api: FakeAPI) -> None:
    fake_api.create_status = "TIMEOUT"
    fake_api.create_status_info = "waiting for resources: needs cpu=4"
    result = shipyard("run", "--max-wait", "2.5", "-c", "1")
    assert result.exit_code == 1
    assert re.fullmatch(
        r"session run-[0-9a-f]{10} did not start within 2.5 s: waiting for resources: needs cpu=4",
        one_error_line(result),
    )
    (create,) = [r for r in fake_api.requests if r.target == "/session"]
    assert json.loads(create.body)["maxWaitSeconds"] == 2.5
    assert fake_api.requests[-1].method == "DELETE"
    created = shipyard("session", "create", "--max-wait", "1")
    assert created.exit_code == 0
    assert "TIMEOUT" in created.stdout
    assert json.loads(fake_api.requests[-1].body)["maxWaitSeconds"] == 1


def test_api_errors_are_one_line_and_exit_1(fake_api: FakeAPI) -> None:
    fake_api.errors[("POST", "/session")] = problem(
        404, "object-not-found", "No such environment image.", "Unknown image: nosuch"
    )
    result = shipyard("run", "-i", "nosuch", "-c", "1")
    assert result.exit_code == 1
    assert one_error_line(result) == "No such environment image. (404): Unknown image: nosuch"
    # the removal is still tried, and its 404 (never created) is not worth a warning
    assert [m for m, _ in fake_api.calls()] == ["GET", "POST", "DELETE"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["run", "-c", "1", "-r", "cpu"],
            "Invalid value for '-r' / '--resource': expected KEY=VALUE",
        ),
        (["run", "-c", "1", "-r", "=1"], "expected KEY=VALUE, got '=1'"),
        (["run", "-c", "1", "-e", "NOEQUALS"], "Invalid value for '-e' / '--env'"),
        (["run", "-c", "1", "--exec", "ls"], "give -c CODE or --exec CMD, not both"),
        (["run", "-c", "1", "no-such-file.py"], "'no-such-file.py' does not exist"),
        (["run", "-c", "1", "--max-wait", "-1"], "--max-wait': -1.0 is not in the range x>=0"),
        (["session", "frobnicate"], "No such command 'frobnicate'"),
        (["session", "exec", "s1", "-c", "1", "--exec", "ls"], "not both"),
        (["image", "alias", "py"], "missing TARGET"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    fake_api: FakeAPI, args: list[str], expected: str
) -> None:
    result = shipyard(*args)
    assert result.exit_code == 2
    assert expected in one_error_line(result)
    assert fake_api.requests == []


def test_missing_configuration_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for prefix in ("SHIPYARD", "BACKEND"):
        for name in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY"):
            monkeypatch.delenv(f"{prefix}_{name}", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    result = shipyard("session", "ls")
    assert result.exit_code == 1
    assert one_error_line(result).endswith(
        "source the file `shipyard up` wrote: . /srv/data/shipyard/client.env"
    )


def test_an_unreachable_control_plane_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SHIPYARD_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SHIPYARD_ACCESS_KEY", "AK")
    monkeypatch.setenv("SHIPYARD_SECRET_KEY", "SK")
    result = shipyard("run", "-c", "1")
    assert result.exit_code == 1
    message = one_error_line(result)  # and no warning about removing a session never created
    assert message.startswith(f"cannot reach the control plane at http://127.0.0.1:{port}: ")


def test_session_commands(fake_api: FakeAPI) -> None:
    created = shipyard("session", "create", "-n", "s1", "-i", "python", "--enqueue-only")
    assert created.exit_code == 0, created.output
    sid = next(iter(fake_api.sessions))
    assert created.stdout.splitlines() == [f"id:     {sid}", "name:   s1", "status: RUNNING"]
    assert json.loads(fake_api.requests[0].body)["enqueueOnly"] is True

    listed = shipyard("session", "ls", "--all")
    assert fake_api.requests[-1].target == "/session?all=true"
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "IMAGE", "CREATED"]
    assert row.split() == [sid, "s1", "RUNNING", "python", "2026-11-22T04:00:00+00:00"]

    info = shipyard("session", "info", "s1")
    assert re.search(rf"^sessionId: +{sid}$", info.stdout, re.MULTILINE)
    assert re.search(r"^statusInfo: +-$", info.stdout, re.MULTILINE)
    assert info.stdout.endswith("statusHistory:\n  t0  PENDING  (enqueued)\n")

    as_json = shipyard("session", "info", "s1", "--json")
    assert json.loads(as_json.stdout)["sessionId"] == sid
    assert json.loads(shipyard("session", "ls", "--json").stdout)[0]["sessionName"] == "s1"

    logs = shipyard("session", "logs", "s1")
    assert logs.stdout == "container says hello\n"

    ran = shipyard("session", "exec", "s1", "-c", "print(1)")
    assert (ran.exit_code, ran.stdout) == (0, "hi\n")
    assert fake_api.calls()[-2:] == [
        ("GET", "/session/s1"),
        ("WS", f"/stream/session/{sid}/execute"),
    ]

    removed = shipyard("session", "rm", "s1", "nosuch")
    assert removed.exit_code == 1
    assert removed.stdout == "removed s1\n"
    assert one_error_line(removed) == (
        "nosuch: No such session. (404): Session (id=nosuch) does not exist."
    )


def test_admin_keypair_commands(fake_api: FakeAPI) -> None:
    created = shipyard("admin", "keypair", "create", "ann@example.com", "--admin")
    assert created.exit_code == 0
    assert "access key: AKNEW" in created.stdout and "secret key: SKNEW" in created.stdout
    assert json.loads(fake_api.requests[-1].body) == {"user": "ann@example.com", "isAdmin": True}
    listed = shipyard("admin", "keypair", "ls")
    assert listed.stdout.splitlines()[0].split() == [
        "ACCESS",
        "KEY",
        "USER",
        "ACTIVE",
        "ADMIN",
        "CREATED",
    ]
    removed = shipyard("admin", "keypair", "rm", "AKOLD")
    assert removed.stdout == "removed AKOLD\n"
    assert fake_api.calls()[-1] == ("DELETE", "/admin/keypairs/AKOLD")


def test_image_commands(fake_api: FakeAPI) -> None:
    listed = shipyard("image", "ls")
    assert listed.stdout.splitlines()[1].split() == [
        "shipyard/python:3.11",
        "recipe",
        "0123456789ab",
        "117",
        "MB",
        "x86_64",
        "python",
        "i-a",
    ]
    with_labels = shipyard("image", "ls", "--labels").stdout.splitlines()
    assert with_labels[0].split()[-1] == "LABELS"
    assert with_labels[1].endswith("ai.shipyard.batch.exec=python main.py,ai.shipyard.kernel=1")
    registered = shipyard("image", "register", "site/tools:1")
    assert registered.stdout == "registered site/tools:1 (on i-a, i-b)\n"
    assert json.loads(fake_api.requests[-1].body) == {"name": "site/tools:1"}
    assert shipyard("image", "forget", "site/tools:1").stdout == "forgot site/tools:1\n"
    assert fake_api.calls()[-1] == ("DELETE", "/images/site/tools:1")
    aliased = shipyard("image", "alias", "py", "shipyard/python:3.11")
    assert aliased.stdout == "py -> shipyard/python:3.11\n"
    assert json.loads(fake_api.requests[-1].body) == {
        "alias": "py",
        "target": "shipyard/python:3.11",
    }
    assert shipyard("image", "alias", "--remove", "py").stdout == "removed alias py\n"
    assert shipyard("image", "dealias", "py3").exit_code == 0
    assert fake_api.calls()[-2:] == [
        ("DELETE", "/images/aliases/py"),
        ("DELETE", "/images/aliases/py3"),
    ]


def test_image_build_is_imported_only_when_invoked(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("kernelimages", "kernelimages._build"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    listing = shipyard("image", "--help")
    assert "build" in listing.stdout
    assert "kernelimages" not in sys.modules
    helped = shipyard("image", "build", "--help")
    assert helped.exit_code == 0
    assert "RECIPE" in helped.stdout
    assert "kernelimages" in sys.modules


def test_the_run_path_imports_only_what_it_needs() -> None:
    code = (
        "import sys; import shipyard.cli as c; c.main.get_command(None, 'run').load();"
        " import client._stream;"
        " heavy = ['client._cli_admin', 'controlplane.api', 'node.agent', 'quart', 'sqlalchemy'];"
        " print([m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_version_answers_as_click_would_without_importing_it() -> None:
    code = (
        "import sys; from shipyard._main import main; sys.argv = ['shipyard', '--version'];"
        " main(); heavy = ['click', 'typing', 'pydantic', 'shipyard.cli'];"
        " print([m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == shipyard("--version").stdout + "[]\n"


def test_the_fast_run_path_signs_as_the_sdk_does() -> None:
    from datetime import UTC, datetime

    from client import fastrun
    from client.config import ClientConfig
    from wire import API_VERSION, sign

    config = ClientConfig("http://127.0.0.1:8081", "AKIAEXAMPLE", "s3cret")
    date = datetime(2026, 11, 28, 23, 59, 59, 123456, tzinfo=UTC).isoformat()
    ours = fastrun.sign("POST", "/session", date, "127.0.0.1:8081", "application/json", config)
    assert ours == sign(
        method="POST",
        rel_url="/session",
        date=date,
        host="127.0.0.1:8081",
        content_type="application/json",
        version=API_VERSION,
        secret_key="s3cret",
    )
    assert fastrun.API_VERSION == API_VERSION


@pytest.mark.parametrize(
    ("argv", "fast"),
    [
        (["-c", "print(1)"], True),
        (["-i", "python:3.11", "-r", "cpu=1", "-r", "mem=256", "-e", "A=b=c", "-c", "1"], True),
        (["--exec", "ls", "--max-wait", "2.5"], True),
        (["-c", "1", "--exec", "ls"], False),  # the click command says what is wrong
        (["-c", "1", "x.py"], False),  # files are uploaded by the SDK
        (["-c", "1", "-r", "cpu"], False),
        (["-c", "1", "--max-wait", "-1"], False),
        (["-c", "1", "-m", "data"], False),
        (["-c1"], False),
        (["--help"], False),
        ([], False),
    ],
)
def test_the_fast_run_path_takes_only_what_it_handles(argv: list[str], fast: bool) -> None:
    from client import fastrun

    args = fastrun.parse(argv)
    assert (args is not None) == fast
    if args is not None and "-r" in argv:
        assert (args.resources, args.environ) == ({"cpu": "1", "mem": "256m"}, {"A": "b=c"})
