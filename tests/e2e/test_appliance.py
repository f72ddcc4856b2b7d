"""The single-node appliance end to end: what a user sees from `shipyard` against real
containers (issue: single-node core, "Done when")."""

from __future__ import annotations

import functools
import json
import os
import signal

import pytest

from shipyard.testing import Appliance, port_free, running_appliance, wait_for

pytestmark = pytest.mark.docker


def test_run_prints_and_exits_with_the_codes_exit_status(appliance: Appliance) -> None:
    result = appliance.cli("run", "-c", "print(6*7)")
    assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
    result = appliance.cli("run", "-c", "import sys; sys.exit(3)")
    assert result.returncode == 3, result.stderr
    # temporary sessions go: removed once the output is written, without keeping the user waiting
    wait_for(lambda: appliance.cli("session", "ls").stdout.count("run-") == 0, "their removal")


def test_output_streams_in_order_and_tracebacks_go_to_stderr(appliance: Appliance) -> None:
    result = appliance.cli(
        "run", "-c", "import sys\nprint('out')\nprint('err', file=sys.stderr)\n1/0"
    )
    assert result.returncode == 1
    assert result.stdout == "out\n"
    assert result.stderr.startswith("err\nTraceback")
    assert "ZeroDivisionError: division by zero" in result.stderr


def test_input_is_answered_from_stdin(appliance: Appliance) -> None:
    result = appliance.cli("run", "-c", "name = input('name? ')\nprint('hi', name)", input="bob\n")
    assert result.returncode == 0, result.stderr
    assert "hi bob" in result.stdout


def test_batch_with_uploaded_files(appliance: Appliance, tmp_path: object) -> None:
    workdir = os.path.join(str(tmp_path), "w")
    os.makedirs(os.path.join(workdir, "sub"))
    with open(os.path.join(workdir, "main.py"), "w") as f:
        f.write("import sub.data as d\nprint(open('sub/data.py').read().strip(), d.X)\n")
    with open(os.path.join(workdir, "sub", "data.py"), "w") as f:
        f.write("X = 5\n")
    result = appliance.cli(
        "run", "--exec", "python3 main.py && exit 4", "main.py", "sub/data.py", cwd=workdir
    )
    assert result.stdout == "X = 5 5\n", result.stderr
    assert result.returncode == 4


def test_session_keeps_state_between_runs(appliance: Appliance) -> None:
    created = appliance.cli("session", "create", "-n", "keep-1")
    assert created.returncode == 0, created.stderr
    assert appliance.cli("session", "exec", "keep-1", "-c", "x = 41").returncode == 0
    result = appliance.cli("session", "exec", "keep-1", "-c", "print(x + 1)")
    assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
    logs = appliance.cli("session", "logs", "keep-1")
    assert "42" in logs.stdout
    assert appliance.cli("session", "rm", "keep-1").returncode == 0


def test_out_of_memory_is_reported_not_hung(appliance: Appliance) -> None:
    created = appliance.cli("session", "create", "-n", "oom-1", "-r", "mem=128m")
    assert created.returncode == 0, created.stderr
    result = appliance.cli("session", "exec", "oom-1", "-c", "b = bytearray(1024**3)", timeout=60)
    assert result.returncode == 137
    assert "out of memory" in result.stderr
    info = appliance.cli("session", "info", "oom-1")
    assert "ERROR" in info.stdout
    assert "out of memory (memory limit 128 MiB)" in info.stdout
    session_id = _session_id(appliance, "oom-1")
    assert appliance.cli("session", "rm", "oom-1").returncode == 0
    assert appliance.containers(session_id=session_id) == []


def test_container_limits_and_isolation(appliance: Appliance) -> None:
    appliance.cli("session", "create", "-n", "lim-1", "-r", "cpu=0.5", "-r", "mem=256m")
    session_id = _session_id(appliance, "lim-1")
    import docker

    client = docker.from_env()
    try:
        (container_id,) = appliance.containers(session_id=session_id)
        attrs = client.containers.get(container_id).attrs
    finally:
        client.close()
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 256 * 2**20
    assert host["PidsLimit"] and host["PidsLimit"] > 0
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Init"] is True
    assert host["NetworkMode"] == "none"
    assert attrs["Config"]["User"] not in ("", "0", "root")
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/opt/shipyard"]["RW"] is False
    assert not any("docker.sock" in m["Source"] for m in attrs["Mounts"])
    result = appliance.cli("session", "exec", "lim-1", "-c", "import os; print(os.getuid())")
    assert result.stdout.strip() != "0"
    appliance.cli("session", "rm", "lim-1")


def test_bad_input_gets_one_clear_line(appliance: Appliance) -> None:
    cases = [
        (["run", "-i", "no-such-image", "-c", "1"], "No such environment image"),
        (["session", "create", "-n", "x"], "name"),
        (["session", "create", "-n", "huge-1", "-r", "cpu=64"], "no node can ever provide"),
        (["session", "create", "-n", "bad-1", "-r", "mem=lots"], "size"),
        (["session", "info", "no-such-session"], "No such session"),
    ]
    for args, needle in cases:
        result = appliance.cli(*args)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("shipyard: error:"), lines
        assert needle in lines[0], (args, lines)
        assert "Traceback" not in result.stderr
    listing = appliance.cli("session", "ls", "--all")
    assert "huge-1" not in listing.stdout and "bad-1" not in listing.stdout


def test_wrong_credentials_are_refused(appliance: Appliance) -> None:
    env = appliance.env()
    env["SHIPYARD_SECRET_KEY"] = "wrong"
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "shipyard", "session", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "signature" in result.stderr.lower() or "credential" in result.stderr.lower()


def test_sessions_survive_kill_9_of_up(test_image: str) -> None:
    with running_appliance() as appliance:
        created = appliance.cli("session", "create", "-n", "survivor")
        assert created.returncode == 0, created.stderr
        appliance.cli("session", "exec", "survivor", "-c", "x = 41")
        session_id = _session_id(appliance, "survivor")
        assert appliance.process is not None
        pid = appliance.process.pid
        os.kill(pid, signal.SIGKILL)
        appliance.process.wait(timeout=10)
        appliance.process = None
        # the children notice their parent died and stop; the port comes free again
        wait_for(functools.partial(port_free, appliance.port), "the old control plane to stop")
        appliance.start()
        listing = appliance.cli("session", "ls")
        assert "survivor" in listing.stdout and "RUNNING" in listing.stdout, listing.stdout
        result = appliance.cli("session", "exec", "survivor", "-c", "print(x + 1)")
        assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
        assert appliance.cli("session", "rm", "survivor").returncode == 0
        assert appliance.containers(session_id=session_id) == []


def _session_id(appliance: Appliance, name: str) -> str:
    info = appliance.cli("session", "info", name, "--json")
    assert info.returncode == 0, info.stderr
    return str(json.loads(info.stdout)["sessionId"])


def test_appliance_on_postgresql(test_image: str) -> None:
    dsn = os.environ.get("SHIPYARD_TEST_POSTGRES_DSN")
    if not dsn:
        if os.environ.get("CI"):
            raise AssertionError("CI must test PostgreSQL: ./dev test sets the DSN")
        pytest.skip("set SHIPYARD_TEST_POSTGRES_DSN (./dev test does) to test PostgreSQL")
    _reset_postgres(dsn)
    with running_appliance(["--database-url", dsn]) as appliance:
        result = appliance.cli("run", "-c", "print(6*7)")
        assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
        appliance.cli("session", "create", "-n", "pg-1")
        appliance.cli("session", "exec", "pg-1", "-c", "x = 41")
        appliance.stop()
        appliance.start()
        result = appliance.cli("session", "exec", "pg-1", "-c", "print(x + 1)")
        assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
        assert appliance.cli("session", "rm", "pg-1").returncode == 0


def _reset_postgres(dsn: str) -> None:
    import anyio
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def reset() -> None:
        engine = create_async_engine(dsn)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    anyio.run(reset, backend="asyncio")
