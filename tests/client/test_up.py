"""`shipyard up`: its state and client.env writers, the port check, and the supervisor run with
two small stand-in services (the real ones are exercised by the end-to-end tests)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from controlplane.config import ControlPlaneConfig
from installer import up
from node.config import NodeConfig

FAKE_SERVICE = textwrap.dedent(
    """
    import http.server, json, os, pathlib, sys, time, tomllib

    role, config = sys.argv[1], sys.argv[4]
    settings = tomllib.loads(pathlib.Path(config).read_text())
    if role == "controlplane":
        state = pathlib.Path(settings["state_dir"])
        keypair = {"access_key": "AKFAKE", "secret_key": "it's $ecret", "email": "a@b"}
        (state / "admin-keypair.json").write_text(json.dumps(keypair))

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                alive = int((state / "node-alive").exists())
                body = json.dumps({"status": "ok", "nodesAlive": alive}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer((settings["host"], settings["port"]), Health)
        print("control plane up", flush=True)
        server.serve_forever()
    else:
        (pathlib.Path(settings["state_dir"]).parent / "node-alive").touch()
        print("node up", flush=True)
        if os.environ.get("FAKE_NODE_EXIT"):
            time.sleep(0.5)
            sys.exit(int(os.environ["FAKE_NODE_EXIT"]))
        time.sleep(600)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Callable[[], bool]) -> None:
    """Poll: what we wait for happens in another process, so there is no event to await."""
    while True:
        if condition():
            return
        await trio.sleep(0.02)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_client_env_is_private_and_sources_back_to_the_same_values(tmp_path: Path) -> None:
    env = tmp_path / "client.env"
    env.write_text("old\n")
    env.chmod(0o644)
    up.write_client_env(env, "http://127.0.0.1:8081", "AKIA0001", "s3cr'et $HOME `x`")
    assert mode(env) == 0o600
    lines = env.read_text().splitlines()
    assert lines[0] == "export SHIPYARD_ENDPOINT=http://127.0.0.1:8081"
    assert lines[1] == "export SHIPYARD_ACCESS_KEY=AKIA0001"
    assert [line.split("=")[0] for line in lines] == [
        "export SHIPYARD_ENDPOINT",
        "export SHIPYARD_ACCESS_KEY",
        "export SHIPYARD_SECRET_KEY",
        "export BACKEND_ENDPOINT",
        "export BACKEND_ACCESS_KEY",
        "export BACKEND_SECRET_KEY",
    ]
    shown = subprocess.run(
        ["sh", "-c", f'. {env} && printf "%s|%s" "$SHIPYARD_SECRET_KEY" "$BACKEND_SECRET_KEY"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == "s3cr'et $HOME `x`|s3cr'et $HOME `x`"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.env"]  # no temp file left


def test_state_is_created_private_and_settings_persist(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = up.resolve_state(state)
    first.write()
    assert mode(state) == 0o700
    cp = ControlPlaneConfig.load(state / "controlplane.toml")
    node = NodeConfig.load(state / "node.toml")
    assert (cp.host, cp.port, cp.database_url) == ("127.0.0.1", 8081, "")
    assert len(cp.node_token) >= 40
    assert node.node_token == cp.node_token
    assert node.controlplane_url == "http://127.0.0.1:8081"
    assert node.state_dir == state / "node"
    assert node.network_mode == "none"

    # options given now win ...
    up.resolve_state(
        state, port=9000, network="bridge", database_url="postgresql://x", node_id="n1"
    ).write()
    # ... and later runs without options keep them, the token and hand-made node settings
    text = (state / "node.toml").read_text()
    (state / "node.toml").write_text(text + "cpu = 2.0\n")
    again = up.resolve_state(state)
    assert again.controlplane.node_token == cp.node_token
    assert (again.controlplane.port, again.controlplane.database_url) == (9000, "postgresql://x")
    assert (again.node.network_mode, again.node.cpu, again.node.node_id) == ("bridge", 2.0, "n1")
    assert again.node.controlplane_url == "http://127.0.0.1:9000"
    assert again.endpoint == "http://127.0.0.1:9000"


def test_a_broken_config_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "controlplane.toml").write_text("this is = = not toml")
    with pytest.raises(up.UpError, match=r"controlplane.toml: .*; fix or remove it"):
        up.resolve_state(tmp_path)


def test_endpoint_dials_loopback_for_a_wildcard_listener() -> None:
    assert up.endpoint_for("0.0.0.0", 8081) == "http://127.0.0.1:8081"
    assert up.endpoint_for("::1", 8081) == "http://[::1]:8081"


def test_a_port_in_use_is_reported_before_starting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(up.UpError, match=f"port {port} on 127.0.0.1 is already in use"):
            up.check_port_free("127.0.0.1", port)
    up.check_port_free("127.0.0.1", port)


@pytest.fixture
def fake_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> up.Layout:
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE_SERVICE)
    monkeypatch.setattr(up, "shipyard_argv", lambda: [sys.executable, str(script)])
    monkeypatch.setattr(up, "STOP_GRACE", 2.0)
    layout = up.resolve_state(tmp_path / "state", port=free_port())
    layout.write()
    return layout


@pytest.mark.trio
async def test_supervisor_stops_both_on_sigterm_and_writes_client_env(
    fake_services: up.Layout,
) -> None:
    async def terminate_when_ready() -> None:
        await until(fake_services.client_env.exists)
        os.kill(os.getpid(), signal.SIGTERM)  # caught by `up`'s signal receiver

    async with trio.open_nursery() as nursery:
        nursery.start_soon(terminate_when_ready)
        with trio.fail_after(30):
            assert await up.supervise(fake_services) == (0, "stopped")
    env = fake_services.client_env.read_text()
    assert f"export SHIPYARD_ENDPOINT={fake_services.endpoint}\n" in env
    assert "export BACKEND_SECRET_KEY='it'\"'\"'s $ecret'\n" in env
    logs = fake_services.logs_dir
    assert "control plane up" in (logs / "controlplane.log").read_text()
    assert "node up" in (logs / "node.log").read_text()


@pytest.mark.trio
async def test_supervisor_reports_a_dead_child_and_stops_the_other(
    fake_services: up.Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NODE_EXIT", "3")
    with trio.fail_after(30):
        code, message = await up.supervise(fake_services)
    node_log = fake_services.logs_dir / "node.log"
    assert (code, message) == (1, f"the node exited with code 3; see {node_log}")
    with socket.socket() as probe:  # the control plane was stopped: its port is free again
        assert probe.connect_ex(("127.0.0.1", fake_services.controlplane.port)) != 0


@pytest.mark.trio
async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    stubborn += " print('sig' + 'ignored', flush=True); time.sleep(60)"  # not in the argv line
    log = tmp_path / "stubborn.log"
    child = up.Child("stubborn", [sys.executable, "-c", stubborn], log)
    await until(lambda: "sigignored" in log.read_text())
    started = time.monotonic()
    assert await child.stop(grace=0.3) == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_children_die_with_up_even_on_sigkill(tmp_path: Path) -> None:
    parent = textwrap.dedent(
        f"""
        import os, signal, sys, trio
        from pathlib import Path
        from installer.up import Child

        async def main():
            child = Child("sleeper", ["sleep", "60"], Path({str(tmp_path / "sleep.log")!r}))
            print(child.popen.pid, flush=True)
            await trio.sleep(0.2)
            os.kill(os.getpid(), signal.SIGKILL)

        trio.run(main)
        """
    )
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie waiting for its new parent counts as dead
