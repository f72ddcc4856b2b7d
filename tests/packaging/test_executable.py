"""The single executable (PyInstaller one-file, packaging/pyinstaller/shipyard.spec) run as a
user would: from a folder outside the repository, with an empty environment and no virtualenv.

The executable comes from the `executable` fixture (tests/conftest.py): `./dev test` sets
SHIPYARD_TEST_PACKAGE=1, which builds it from this tree once per run (about 40 s). The module
installs it once, unpacked (`shipyard install --executable`, installer/_layout.py), and runs most
commands through that installed one: the same program, without unpacking at every start.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import MIGRATIONS
from hostlib import __version__
from node.runner import RUNNER_PATH

pytestmark = pytest.mark.package

TEST_IMAGE = "shipyard-test/python:3.11"


def clean_env(home: Path) -> dict[str, str]:
    """What a fresh login on a machine without our virtualenv would have."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM first: the bootloader forwards it to the Python process and removes the unpacked
    folder after it. A SIGKILL reaches the bootloader alone and leaves both behind."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def installed(executable: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`shipyard install --executable` into a fresh prefix: the command a user then runs."""
    prefix = tmp_path_factory.mktemp("prefix")
    link = prefix / "bin" / "shipyard"
    result = subprocess.run(
        [str(executable), "install", "--executable", str(link)],
        cwd=prefix,
        env=clean_env(prefix),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return link


def test_every_command_loads_with_an_empty_environment(
    executable: Path, installed: Path, tmp_path: Path
) -> None:
    """The one-file program, then each command through the installed one: the same program
    (the same modules, read from inside the same file), without unpacking at every start."""

    def shipyard(*args: str, program: Path = installed) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(program), *args],
            cwd=tmp_path,
            env=clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )

    for program in (executable, installed):
        version = shipyard("--version", program=program)
        assert (version.returncode, version.stdout) == (0, f"shipyard, version {__version__}\n")
    # The CLI imports each subcommand's module by name only when it is used; its --help
    # fails if PyInstaller left that module (or one it imports) out.
    listing = shipyard("--help").stdout
    commands = [line.split()[0] for line in listing.split("Commands:\n", 1)[1].splitlines()]
    assert {"run", "up", "controlplane", "node", "image"} <= set(commands)
    for command in commands:
        result = shipyard(command, "--help")
        assert result.returncode == 0, f"{command} --help: {result.stderr}"
    # commands one package adds to another's group (shipyard/cli.py's registry)
    for command in (["image", "build"], ["node", "token", "create"]):
        result = shipyard(*command, "--help")
        assert result.returncode == 0, f"{' '.join(command)} --help: {result.stderr}"


def test_installed_executable_starts_without_unpacking(
    executable: Path, installed: Path, tmp_path: Path
) -> None:
    """The installed command is the same program laid out once: it starts as one process, on
    the libpython of its own folder, where the one-file program unpacks about 45 MB into a
    temporary folder at every start and runs Python as its child."""
    build = installed.resolve().parent
    assert build.parent == installed.parent.parent / "lib" / "shipyard"
    assert build.name.startswith(f"{__version__}-")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(60)
        env = clean_env(tmp_path) | {
            "SHIPYARD_ENDPOINT": f"http://127.0.0.1:{listener.getsockname()[1]}",
            "SHIPYARD_ACCESS_KEY": "AKIATEST",
            "SHIPYARD_SECRET_KEY": "test",
        }
        process = subprocess.Popen(
            [str(installed), "run", "-c", "print(1)"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1)  # its first request: the command is up
                maps = Path(f"/proc/{process.pid}/maps").read_text()
                children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
        finally:
            process.kill()
            process.wait()
    assert children == ""
    assert {Path(p).parent for p in re.findall(r"\S*/libpython3[^/\s]*", maps)} == {
        build / "_internal"
    }

    def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(installed), *args], env=clean_env(tmp_path), capture_output=True, text=True
        )

    version = shipyard("--version")
    assert (version.returncode, version.stdout) == (0, f"shipyard, version {__version__}\n")
    # installing from the installed command finds the same build: the index it appended to
    # the program is not taken for part of it
    again = shipyard("install", "--executable", str(installed))
    assert again.returncode == 0 and "executable: already done" in again.stdout, again.stdout
    assert [p.name for p in build.parent.iterdir()] == [build.name]


@dataclass
class Database:
    url: str  # empty: the embedded SQLite database in the state folder
    revision: Callable[[], str | None]  # what alembic_version says


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":

        def sqlite_revision() -> str | None:
            with closing(sqlite3.connect(tmp_path / "state" / "controlplane.db")) as db:
                row = db.execute("SELECT version_num FROM alembic_version").fetchone()
            return None if row is None else str(row[0])

        yield Database("", sqlite_revision)
        return
    dsn = os.environ.get("SHIPYARD_TEST_POSTGRES_DSN")
    if not dsn:
        if os.environ.get("CI"):
            raise RuntimeError(
                "CI must test PostgreSQL: ./dev test sets SHIPYARD_TEST_POSTGRES_DSN"
            )
        pytest.skip("set SHIPYARD_TEST_POSTGRES_DSN (./dev test does) to test PostgreSQL")
    # A database of its own: the control plane tests drop and recreate the shared one's schema.
    server = make_url(dsn)
    name = f"shipyard_pkg_{secrets.token_hex(4)}"

    async def query(sql: str, database: str | None = None) -> str | None:
        url = server.set(database=database) if database else server
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE
        try:
            async with engine.connect() as conn:
                result = await conn.execute(text(sql))
                value = result.scalar() if result.returns_rows else None
        finally:
            await engine.dispose()
        return None if value is None else str(value)

    asyncio.run(query(f'CREATE DATABASE "{name}"'))
    try:
        yield Database(
            server.set(database=name).render_as_string(hide_password=False),
            lambda: asyncio.run(query("SELECT version_num FROM alembic_version", name)),
        )
    finally:
        asyncio.run(query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_control_plane_migrates_a_fresh_database_and_serves(
    executable: Path, tmp_path: Path, database: Database
) -> None:
    """Alembic's migrations are files inside the bundle; a fresh database reaching the newest
    revision shows they travelled, along with the database driver, hypercorn and Quart."""
    config = ControlPlaneConfig(
        state_dir=tmp_path / "state",
        node_token=secrets.token_urlsafe(16),
        port=free_port(),
        database_url=database.url,
    )
    config_path = tmp_path / "controlplane.toml"
    config.dump(config_path)
    log = tmp_path / "controlplane.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(executable), "controlplane", "serve", "--config", str(config_path)],
            cwd=tmp_path,
            env=clean_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def answers() -> bool:
            assert process.poll() is None, f"the control plane exited:\n{log.read_text()}"
            try:
                return httpx.get(f"http://127.0.0.1:{config.port}/", timeout=1).is_success
            except httpx.TransportError:
                return False

        wait_for(answers, "the control plane to answer GET /")
        hello = httpx.get(f"http://127.0.0.1:{config.port}/", timeout=5).json()
        assert hello["shipyard"] == __version__
        scripts = AlembicConfig()
        scripts.set_main_option("script_location", str(MIGRATIONS))
        assert database.revision() == ScriptDirectory.from_config(scripts).get_current_head()
        assert json.loads(config.admin_keypair_file.read_text())["access_key"]
        # the web UI's templates and vendored assets travelled too
        base = f"http://127.0.0.1:{config.port}/ui"
        sign_in = httpx.get(f"{base}/sign-in", timeout=5)
        assert sign_in.status_code == 200 and "Sign in to Shipyard" in sign_in.text
        for asset in re.findall(r'(?:src|href)="/ui(/static/[^"]+)"', sign_in.text):
            assert httpx.get(f"{base}{asset}", timeout=5).status_code == 200, asset
        assert "htmx.min.js" in sign_in.text

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        stop(process)


@pytest.mark.docker
def test_shipyard_up_runs_code(executable: Path, installed: Path) -> None:
    """`shipyard up` re-executes the executable for the control plane and the node; the node
    copies the bundled runner into its state folder and mounts it into the kernel. The client
    commands are the installed ones (laid out unpacked)."""
    client = docker.from_env()
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        client.close()
        pytest.fail(f"{TEST_IMAGE} is missing: ./dev test builds it")
    node_id = f"i-pkg-{secrets.token_hex(4)}"
    state = Path(f"/tmp/sy-pkg-{secrets.token_hex(3)}")  # short: Unix socket paths max out
    state.mkdir(mode=0o700)
    # `up` keeps the node id an existing node.toml names; a unique one keeps this node away
    # from other appliances' containers on the same engine.
    (state / "node.toml").write_text(
        f'state_dir = "{state}/node"\ncontrolplane_url = "http://127.0.0.1:1"\n'
        f'node_token = "-"\nnode_id = "{node_id}"\n'
    )
    with (state / "up.log").open("wb") as out:
        up = subprocess.Popen(
            [str(executable), "up", "--state-dir", str(state), "--port", str(free_port())],
            cwd=state,
            env=clean_env(state),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        client_env = state / "client.env"

        def ready() -> bool:
            assert up.poll() is None, (state / "up.log").read_text()
            return client_env.exists()

        wait_for(ready, "shipyard up to write client.env", 90)
        env = clean_env(state)
        for line in client_env.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]

        def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(installed), *args],
                cwd=state,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        alias = shipyard("image", "alias", "python", TEST_IMAGE)
        assert alias.returncode == 0, alias.stderr
        result = shipyard("run", "-c", "print(6*7)")
        assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
        assert (state / "node" / "runner" / "runner.py").read_bytes() == RUNNER_PATH.read_bytes()

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0, (state / "up.log").read_text()
    finally:
        stop(up)
        for container in client.containers.list(
            all=True, filters={"label": f"ai.shipyard.node-id={node_id}"}
        ):
            container.remove(force=True)
        client.close()
        shutil.rmtree(state, ignore_errors=True)
