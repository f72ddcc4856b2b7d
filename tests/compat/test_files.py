"""`session ls`, `session download`, `session rename` and the SDK's interrupt with the official
client (docs/backendai-api.md §11, §6.4; issue 9 item 4), and the container's links: a session
cannot make the node read anything outside its work directory."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]
# links and a FIFO a hostile session plants in its own work directory
PLANT = (
    "import os\n"
    "os.symlink('/etc/passwd', 'leak')\n"
    "os.symlink('/', 'sub/root')\n"
    "os.mkfifo('sub/pipe')\n"
    "print('planted')\n"
)


@pytest.fixture
def session(bai: BackendAI) -> str:
    created = bai("session", "create", "-t", "files-1", *SMALL, "python")
    assert created.returncode == 0, created.stderr
    (bai.workdir / "x.py").write_text("print('x')\n")
    (bai.workdir / "sub").mkdir()
    (bai.workdir / "sub" / "a.txt").write_text("alpha\n")
    uploaded = bai("session", "upload", "files-1", "x.py", "sub/a.txt")
    assert uploaded.returncode == 0, uploaded.stderr
    return "files-1"


def _ls(bai: BackendAI, *args: str) -> dict[str, dict[str, object]]:
    code = (
        "import json\nfrom ai.backend.client.session import Session\n"
        f"with Session() as api:\n    print(json.dumps(api.ComputeSession({args[0]!r})"
        f".list_files({args[1]!r})))\n"
    )
    result = bai.python(code)
    assert result.returncode == 0, result.stdout + result.stderr
    reply = json.loads(result.stdout)
    assert reply["errors"] == ""
    return {item["filename"]: item for item in json.loads(reply["files"])}


def test_ls_and_download_what_was_uploaded(bai: BackendAI, session: str) -> None:
    listed = bai("session", "ls", session)
    assert listed.returncode == 0, listed.stderr
    assert "x.py" in listed.stdout and "sub" in listed.stdout

    top = _ls(bai, session, "/home/work")
    assert top["x.py"]["size"] == len("print('x')\n")
    assert str(top["x.py"]["mode"]).startswith("-rw")
    assert str(top["sub"]["mode"]).startswith("d")
    assert set(_ls(bai, session, "sub")) == {"a.txt"}

    out = bai.workdir / "out"
    got = bai("session", "download", session, "x.py", "/home/work/sub", "--dest", str(out))
    assert got.returncode == 0, got.stderr
    assert "Downloaded" in got.stdout + got.stderr
    assert (out / "x.py").read_text() == "print('x')\n"
    assert (out / "sub" / "a.txt").read_text() == "alpha\n"


def test_links_and_paths_outside_the_work_directory_are_refused(
    bai: BackendAI, session: str
) -> None:
    planted = bai("run", "-t", session, "python", "-c", PLANT)
    assert planted.returncode == 0 and "planted" in planted.stdout, planted.stderr

    # listed as what they are, never followed
    top = _ls(bai, session, ".")
    assert str(top["leak"]["mode"]).startswith("l")
    sub = _ls(bai, session, "sub")
    assert str(sub["root"]["mode"]).startswith("l") and str(sub["pipe"]["mode"]).startswith("p")

    out = bai.workdir / "out"
    for path in ("leak", "sub/root/etc/passwd", "../../etc/passwd", "/etc/passwd", "sub/pipe"):
        refused = bai("session", "download", session, path, "--dest", str(out))
        assert refused.returncode != 0, path
        assert "root:" not in refused.stdout + refused.stderr
    assert not (out / "passwd").exists()
    for path in ("sub/root", "/etc", "../.."):
        assert bai("session", "ls", session, path).returncode != 0, path

    # a folder with links in it comes without them
    got = bai("session", "download", session, "sub", "--dest", str(out))
    assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in (out / "sub").iterdir()) == ["a.txt"]


def test_download_answers_one_tar_per_file(bai: BackendAI, session: str) -> None:
    reply = bai.api("GET", f"/session/{session}/download", {"files": ["x.py", "sub/a.txt"]})
    assert reply.status_code == 200, reply.text
    content_type = reply.headers["content-type"]
    assert content_type.startswith("multipart/mixed; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    parts = [p for p in reply.content.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    names = []
    for part in parts:
        head, _, data = part.partition(b"\r\n\r\n")
        assert b"Content-Encoding: identity" in head
        with tarfile.open(fileobj=io.BytesIO(data.removesuffix(b"\r\n"))) as tar:
            names.append(tar.getnames())
    assert names == [["x.py"], ["a.txt"]]


def test_rename_then_use_the_new_name(bai: BackendAI, session: str) -> None:
    session_id = bai.api("GET", f"/session/{session}").json()["sessionId"]
    renamed = bai("session", "rename", session, "files-renamed")
    assert renamed.returncode == 0, renamed.stderr
    assert bai.api("GET", "/session/files-renamed").json()["sessionId"] == session_id
    [item] = [i for i in bai.json("ps")["items"] if i["session_id"] == session_id]
    assert item["name"] == "files-renamed"
    listed = bai("session", "ls", "files-renamed")
    assert listed.returncode == 0 and "x.py" in listed.stdout, listed.stderr
    bad = bai("session", "rename", "files-renamed", "no spaces please")
    assert bad.returncode != 0


INTERRUPT = """
import json, threading, time
from ai.backend.client.session import Session

with Session() as api:
    cs = api.ComputeSession(NAME)
    code = "import time\\nprint('start', flush=True)\\ntime.sleep(60)"
    first = cs.execute("long", code, mode="query")
    cs.interrupt()
    steps = [first]
    while steps[-1]["status"] != "finished":
        steps.append(cs.execute("long", "", mode="continue"))
print(json.dumps(steps))
"""


def test_interrupt_stops_the_running_code(bai: BackendAI, session: str) -> None:
    result = bai.python(INTERRUPT.replace("NAME", repr(session)), timeout=50)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = json.loads(result.stdout.splitlines()[-1])
    stderr = "".join(d for s in steps for k, d in s["console"] if k == "stderr")
    assert "KeyboardInterrupt" in stderr
    assert (steps[-1]["status"], steps[-1]["exitCode"]) == ("finished", 1)


COMPLETE = """
import json
from ai.backend.client.session import Session

with Session() as api:
    cs = api.ComputeSession(NAME)
    cs.execute(None, "import json as my_json_module", mode="query")
    print(json.dumps([cs.complete("my_json_mo"), cs.complete("my_json_module.dum")]))
"""


def test_complete_offers_the_sessions_names(bai: BackendAI, session: str) -> None:
    result = bai.python(COMPLETE.replace("NAME", repr(session)))
    assert result.returncode == 0, result.stdout + result.stderr
    names, attributes = json.loads(result.stdout.splitlines()[-1])
    assert names == {"result": {"status": "finished", "completions": ["my_json_module"]}}
    assert attributes["result"]["completions"] == ["my_json_module.dump(", "my_json_module.dumps("]


def test_restart_gives_a_fresh_interpreter_and_keeps_the_files(
    bai: BackendAI, session: str
) -> None:
    kept = bai("run", "-t", session, "python", "-c", "remembered = 1; print('set')")
    assert kept.returncode == 0 and kept.stdout == "set\n", kept.stderr
    restarted = bai("session", "restart", session)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "Done." in restarted.stdout + restarted.stderr

    check = "print('remembered' in globals(), open('x.py').read().strip())"
    after = bai("run", "-t", session, "python", "-c", check)
    assert after.returncode == 0, after.stderr
    assert after.stdout == "False print('x')\n"
    assert bai.api("GET", f"/session/{session}").json()["status"] == "RUNNING"
