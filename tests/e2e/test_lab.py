"""The lab image's apps end to end: JupyterLab through `shipyard app`, the official
`backend.ai app` and the browser proxy (a cookie, no key in any URL); SSH through
`shipyard ssh`/`scp` and plain `ssh` with the printed config (dropbear in the kernel, reached
through the relay by a ProxyCommand).
A real appliance, containers on `--network none`; the image is the python-host-lab recipe's
(tests/conftest.py's `lab_image` builds it when missing: `shipyard image build python-host-lab`)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
import trio_websocket

from shipyard.testing import Appliance, free_port, running_appliance
from tests.e2e.test_apps import _stop

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def appliance(test_image: str, lab_image: str) -> Iterator[Appliance]:
    with running_appliance() as appliance:
        started = time.monotonic()
        created = appliance.cli("session", "create", "-i", lab_image, "-n", "lab1")
        assert created.returncode == 0, created.stderr + appliance.up_log()
        print(f"lab session created in {time.monotonic() - started:.2f} s")
        yield appliance


def _run_cell(
    base: str,
    token: str,
    code: str,
    ws_base: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> str:
    """Create a notebook, start its kernel, run `code` over the kernel websocket; its stdout.
    With `headers` (the browser proxy's cookie) instead of a token."""
    auth = {"Authorization": f"token {token}"} if token else dict(headers or [])
    with httpx.Client(base_url=base, headers=auth, timeout=120) as http:
        made = http.post("/api/contents", json={"type": "notebook"})
        assert made.status_code == 201, made.text
        notebook = made.json()["path"]
        session = http.post(
            "/api/sessions",
            json={"path": notebook, "type": "notebook", "name": "", "kernel": {"name": "python3"}},
        )
        assert session.status_code == 201, session.text
        kernel_id = session.json()["kernel"]["id"]
    ws_base = ws_base or base.replace("http://", "ws://")
    query = f"?token={token}" if token else ""
    url = f"{ws_base}/api/kernels/{kernel_id}/channels{query}"
    return trio.run(_execute, url, code, headers or [])


async def _execute(url: str, code: str, headers: list[tuple[str, str]]) -> str:
    msg_id = uuid.uuid4().hex
    request = {
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False},
    }  # fmt: skip
    out = ""
    with trio.fail_after(120):
        async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
            await ws.send_message(json.dumps(request))
            while True:
                message = json.loads(await ws.get_message())
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    out += content["text"]
                elif kind == "error":
                    raise AssertionError(content)
                elif kind == "status" and content["execution_state"] == "idle":
                    return out


def _printed_url(proc: subprocess.Popen[str], pattern: str) -> re.Match[str]:
    """The first match of `pattern` in what `proc` prints. Reads the pipe's bytes as they come:
    a buffered readline may hold the line we wait for while select sees nothing new."""
    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), ""
    while (match := re.search(pattern, seen)) is None:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, f"no {pattern} in 60 s: {seen}"
        chunk = os.read(fd, 65536)
        assert chunk, seen
        seen += chunk.decode(errors="replace")
    return match


def _app(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


# the app's URL: the local address, the path it serves under, its token
JUPYTER_URL = r"(http://127\.0\.0\.1:\d+/app-proxy/[\w-]+/jupyter)/\?token=(\w+)"


def test_jupyter_through_shipyard_app(appliance: Appliance, tmp_path: Path) -> None:
    proc = _app(
        [sys.executable, "-m", "shipyard", "app", "lab1", "jupyter"], appliance.env(), tmp_path
    )
    try:
        base, token = _printed_url(proc, JUPYTER_URL).groups()
        started = time.monotonic()
        assert _run_cell(base, token, "print(6*7)") == "42\n"
        print(f"jupyter: first cell (app start included) in {time.monotonic() - started:.1f} s")
        # the token is what lets a client in
        assert httpx.get(base + "/api/contents", timeout=30).status_code == 403
    finally:
        _stop(proc)


def test_jupyter_through_the_official_client(appliance: Appliance, tmp_path: Path) -> None:
    bai = os.environ.get("SHIPYARD_TEST_BAI")
    if not bai:
        pytest.skip("SHIPYARD_TEST_BAI is not set (./dev test installs the official client)")
    port = free_port()
    proc = _app(
        [bai, "app", "lab1", "jupyter", "-b", f"127.0.0.1:{port}"], appliance.env(), tmp_path
    )
    try:
        base, token = _printed_url(proc, JUPYTER_URL).groups()
        assert base.startswith(f"http://127.0.0.1:{port}/")
        assert _run_cell(base, token, "print(6*7)") == "42\n"
    finally:
        # the official client may not exit when Ctrl-C meets a closing tunnel (test_apps.py)
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_the_browser_proxy_runs_a_cell_with_a_cookie_only(
    appliance: Appliance, tmp_path: Path
) -> None:
    made = appliance.cli("app", "lab1", "jupyter", "--browser")
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    base = link.split("?")[0]
    assert "key" not in link.lower() and "secret" not in link.lower()
    with httpx.Client(follow_redirects=True, timeout=120) as browser:
        page = browser.get(link)  # the ticket for a cookie, then JupyterLab's page
        assert page.status_code == 200 and "JupyterLab" in page.text
        notebook = browser.post(base + "api/contents", json={"type": "notebook"})
        assert notebook.status_code == 201, notebook.text
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    assert httpx.get(base + "api/contents", timeout=30).status_code == 401  # no cookie
    origin = base.split("/app-proxy/")[0]
    # the kernel websocket through the proxy, as the page would open it
    ws_base = base.replace("http://", "ws://").rstrip("/")
    headers = [("Cookie", cookie), ("Origin", origin)]
    assert _run_cell(base.rstrip("/"), "", "print(6*7)", ws_base=ws_base, headers=headers) == "42\n"


def test_ssh_runs_a_command_and_plain_ssh_works_with_the_printed_config(
    appliance: Appliance, tmp_path: Path
) -> None:
    # as typed in a shell: shipyard ssh lab1 -- python3 -c 'print(6*7); raise SystemExit(3)'
    ran = appliance.cli("ssh", "lab1", "--", "python3", "-c", "print(6*7); raise SystemExit(3)")
    assert (ran.returncode, ran.stdout) == (3, "42\n"), ran.stderr
    key = tmp_path / "id_shipyard"
    config = appliance.cli("ssh", "lab1", "--config", str(key))
    assert config.returncode == 0, config.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    (tmp_path / "config").write_text(config.stdout)
    plain = subprocess.run(
        ["ssh", "-F", str(tmp_path / "config"), "lab1", "echo", "$((6*7))"],
        env=appliance.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (plain.returncode, plain.stdout) == (0, "42\n"), plain.stderr


def test_scp_up_and_down_is_byte_identical(appliance: Appliance, tmp_path: Path) -> None:
    """20 MiB up and back down (bench/ssh_scp.py measures 100 MiB): what came back is what
    went up, so both copies were whole."""
    data = os.urandom(20 * 2**20)
    (tmp_path / "up.bin").write_bytes(data)
    started = time.monotonic()
    sent = appliance.cli("scp", "lab1", str(tmp_path / "up.bin"), ":up.bin", timeout=300)
    elapsed = time.monotonic() - started
    assert sent.returncode == 0, sent.stderr
    print(f"scp: 20 MiB up in {elapsed:.1f} s = {20 / elapsed:.1f} MiB/s")
    back = appliance.cli("scp", "lab1", ":up.bin", str(tmp_path / "down.bin"), timeout=300)
    assert back.returncode == 0, back.stderr
    assert (tmp_path / "down.bin").read_bytes() == data


def test_another_keypair_reaches_none_of_it(appliance: Appliance) -> None:
    made = appliance.cli("admin", "keypair", "create", "other@example.com")
    assert made.returncode == 0, made.stderr
    fields = dict(re.findall(r"^(access key|secret key):\s+(\S+)$", made.stdout, re.M))
    env = {**appliance.env(), "BACKEND_ACCESS_KEY": fields["access key"],
           "BACKEND_SECRET_KEY": fields["secret key"]}  # fmt: skip
    env["SHIPYARD_ACCESS_KEY"], env["SHIPYARD_SECRET_KEY"] = (
        fields["access key"],
        fields["secret key"],
    )
    for argv in (["app", "lab1", "jupyter"], ["app", "lab1", "jupyter", "--browser"]):
        other = subprocess.run(
            [sys.executable, "-m", "shipyard", *argv],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode == 1, other.stdout + other.stderr
        assert "http" not in other.stdout
    # SSH: the other keypair gets a key pair of its own (made here), and its ProxyCommand
    # finds no session lab1 (404): ssh gives up (255) before any login
    other = subprocess.run(
        [sys.executable, "-m", "shipyard", "ssh", "lab1", "--", "echo", "in"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert other.returncode == 255, other.stdout + other.stderr
    assert "No such session" in other.stderr and "in" not in other.stdout
