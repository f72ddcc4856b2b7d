"""`backend.ai config`, `run`, `session create/info/logs/events/destroy` and `ps` with the real
client against a real appliance (docs/backendai-api.md §4, §6.1, §6.2)."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from shipyard.testing import TEST_IMAGE
from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]


def _ps(bai: BackendAI, *args: str) -> list[dict[str, object]]:
    listed = bai.json("ps", *args)
    assert listed["count"] == len(listed["items"])
    items: list[dict[str, object]] = listed["items"]
    return items


def test_config_reports_the_server_and_the_negotiated_version(bai: BackendAI) -> None:
    result = bai("config")
    assert result.returncode == 0, result.stderr
    assert f"API endpoint: {bai.appliance.endpoint} (mode: api)" in result.stdout
    assert "Server version: 23.09.10 (API: v7.20230615)" in result.stdout
    assert "Negotiated API version: (7, '20230615')" in result.stdout
    assert f'Access key: "{bai.env()["BACKEND_ACCESS_KEY"]}"' in result.stdout


def test_run_prints_42_and_keeps_the_session_for_ps_info_logs_destroy(bai: BackendAI) -> None:
    result = bai("run", "python", "-c", "print(6*7)")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"
    assert "Execution finished. (exit code = 0)" in result.stderr
    name = re.search(r"Session name prefix: (\S+)", result.stderr)
    assert name is not None, result.stderr

    # without --rm the session stays, as with Backend.AI
    [item] = [i for i in _ps(bai) if i["name"] == name[1]]
    assert item["status"] == "RUNNING"
    assert item["image"] == TEST_IMAGE
    assert item["type"] == "INTERACTIVE"
    assert item["group_name"] == "default"
    session_id = str(item["session_id"])
    uuid.UUID(session_id)
    assert [i["name"] for i in _ps(bai, "--running")].count(name[1]) == 1

    info = bai.json("session", "info", session_id)
    [detail] = info["items"]
    assert (detail["name"], detail["session_id"], detail["status"]) == (
        name[1],
        session_id,
        "RUNNING",
    )
    assert detail["occupying_slots"] == {"cpu": "1", "mem": str(2**30)}
    [container] = detail["containers"]
    assert container["kernel_id"] == detail["main_kernel_id"]
    assert container["agent"] == bai.appliance.node_id
    console = bai("session", "info", session_id)
    assert console.returncode == 0, console.stderr
    assert "Occupying Slots  cpu:1, mem:1.0G" in console.stdout

    logs = bai("session", "logs", name[1])
    assert logs.returncode == 0, logs.stderr
    assert "End of logs." in logs.stderr

    destroyed = bai("session", "destroy", "-s", name[1])
    assert destroyed.returncode == 0, destroyed.stderr
    assert "Done." in destroyed.stderr
    assert name[1] not in [i["name"] for i in _ps(bai)]
    assert name[1] in [i["name"] for i in _ps(bai, "--dead")]
    assert bai.appliance.containers(session_id=session_id) == []


def test_run_batch_with_uploaded_files_rm_and_stats(bai: BackendAI) -> None:
    (bai.workdir / "sub").mkdir()
    (bai.workdir / "main.py").write_text(
        "import sys\nimport sub.data as d\nprint('data', d.X)\nsys.exit(4)\n"
    )
    (bai.workdir / "sub" / "data.py").write_text("X = 5\n")
    result = bai(
        "run", "--rm", "-s", "-t", "batch-1", "--exec", "python3 main.py",
        "python", "main.py", "sub/data.py",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("data 5\n")
    assert "Uploading done." in result.stderr
    assert "Execution finished. (exit code = 4)" in result.stderr
    assert "Statistics:" in result.stdout
    assert "Cleaned up the session." in result.stderr
    assert "batch-1" not in [i["name"] for i in _ps(bai)]


def test_run_answers_waiting_input_from_stdin(bai: BackendAI) -> None:
    result = bai(
        "run", "--rm", *SMALL, "python", "-c", "n = input('who? ')\nprint('hi', n)",
        input="bob\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "who? hi bob\n"
    assert "Execution finished. (exit code = 0)" in result.stderr


def test_run_reports_errors_and_exit_codes(bai: BackendAI) -> None:
    result = bai("run", "--rm", *SMALL, "python", "-c", "import sys\nprint('x')\n1/0")
    assert result.returncode == 0, result.stderr  # the client does not pass the code on
    assert result.stdout == "x\n"
    assert "Traceback" in result.stderr
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "Execution finished. (exit code = 1)" in result.stderr


def test_session_create_then_events_until_destroy(bai: BackendAI, tmp_path: Path) -> None:
    created = bai(
        "session", "create", "-t", "evt-1", *SMALL, "-e", "FOO=bar", "--tag", "t1", "python"
    )
    assert created.returncode == 0, created.stderr
    found = re.search(r"Session ID (\S+) is created and ready\.", created.stderr)
    assert found is not None, created.stderr
    session_id = found[1]
    again = bai("session", "create", "-t", "evt-1", *SMALL, "python")
    assert again.returncode == 0, again.stderr
    assert f"Session ID {session_id} is already running and ready." in again.stderr

    out = (tmp_path / "events.out").open("w+")
    listener = subprocess.Popen(
        [str(bai.executable), "session", "events", session_id],
        env=bai.env(),
        cwd=bai.workdir,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Give the listener time to connect. If it connects only after the destroy, the
        # stream starts with the final events instead: the end looks the same either way
        # (tests/controlplane/test_events.py checks the live sequence deterministically).
        time.sleep(2)
        destroyed = bai("rm", "evt-1")
        assert destroyed.returncode == 0, destroyed.stderr
        assert listener.wait(timeout=30) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    out.seek(0)
    lines = out.read().splitlines()
    out.close()
    names = [line.split(" ", 1)[0] for line in lines]
    assert names[-3:] == ["kernel_terminated", "session_terminated", "server_close"], lines
    assert f'"sessionId": "{session_id}"' in lines[-2]
    assert '"sessionName": "evt-1"' in lines[-2]


def test_ps_pages_through_everything_in_console_mode(bai: BackendAI) -> None:
    for name in ("page-a", "page-b", "page-c"):
        created = bai("session", "create", "-t", name, *SMALL, "python")
        assert created.returncode == 0, created.stderr
    listed = bai("ps", "--limit", "1", "-f", "name,status")  # pages of 1 item
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[2:]]
    assert [r for r in rows if r[0].startswith("page-")] == [
        ["page-c", "RUNNING"],
        ["page-b", "RUNNING"],
        ["page-a", "RUNNING"],
    ]
    page = bai.json("ps", "--limit", "2", "--order", "+name", "--filter", 'name != "nope"')
    assert page["total_count"] >= 3 and page["count"] == 2
    by_name = bai.json("ps", "--filter", 'name == "page-b"')
    assert [i["name"] for i in by_name["items"]] == ["page-b"]
    bad = bai("ps", "--filter", "colour == 'red'")
    assert bad.returncode == 1
    assert "GraphQL-generated error" in bad.stderr
    assert "cannot filter on 'colour'" in bad.stderr


def test_what_does_not_exist_or_is_not_supported_yet(bai: BackendAI) -> None:
    result = bai("rm", "nosuch")
    assert result.returncode == 1
    assert "BackendAPIError: 404" in result.stderr
    assert "No such session." in result.stderr
    assert "Session (id=nosuch) does not exist." in result.stderr
    info = bai("session", "info", str(uuid.uuid4()))
    assert info.returncode == 1
    assert "There is no such compute session." in info.stderr
    mounted = bai("session", "create", "-m", "nosuchfolder:/home/work/data", *SMALL, "python")
    assert mounted.returncode == 1
    assert "VFolder nosuchfolder is not found or accessible." in mounted.stderr
