"""What every test module shares: one PostgreSQL database per pytest-xdist worker (tests drop
and recreate its schema, so two workers must never share one), and what is built at most once
per run however many workers ask for it: the single executable and the lab image."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "packaging" / "pyinstaller" / "shipyard.spec"
PACKAGES = (
    "shipyard", "wire", "controlplane", "node", "client", "installer", "webui", "hostlib",
    "kernelimages",
)  # fmt: skip


# Modules that take minutes go first: with pytest-xdist a slow module started last would run
# alone at the end while the other workers sit idle.
SLOW_FIRST = (
    "tests/e2e/test_lab.py",  # builds the lab image first when it is missing (minutes)
    "tests/packaging/",  # builds the single executable (about a minute)
    "tests/installer/test_systemd_e2e.py",
    "tests/installer/test_tui.py",
    "tests/e2e/",
    "tests/webui/",
    "tests/compat/",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = Path(item.path).relative_to(REPO).as_posix()
        return next((i for i, p in enumerate(SLOW_FIRST) if path.startswith(p)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the order within a rank stays as collected


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, … (unset without -n)
    dsn = os.environ.get("SHIPYARD_TEST_POSTGRES_DSN")
    if worker and dsn:
        # set before any test runs: the appliances and executables the tests start inherit it
        os.environ["SHIPYARD_TEST_POSTGRES_DSN"] = asyncio.run(_worker_database(dsn, worker))


async def _worker_database(dsn: str, worker: str) -> str:
    url = make_url(dsn)
    name = f"{url.database}_{worker}"
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)  # the shared test database: only to create ours
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    # no TLS negotiation with the local server: a connect cancelled during it (a control plane
    # stopped at a test's end) leaves asyncpg's "unexpected connection_lost() call" unretrieved,
    # which fails the test's teardown
    query = {} if {"ssl", "sslmode"} & set(url.query) else {"ssl": "disable"}
    return url.set(database=name).update_query_dict(query).render_as_string(hide_password=False)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh folder with a short path, for state directories: the Unix sockets under them
    must stay within 107 bytes, and pytest's tmp_path (longer still under xdist) may not."""
    path = Path(tempfile.mkdtemp(prefix="sy-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def executable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SHIPYARD_TEST_EXECUTABLE; else (SHIPYARD_TEST_PACKAGE=1, as ./dev test sets) one built
    from this tree now; else dist/shipyard when it is newer than the sources."""
    if given := os.environ.get("SHIPYARD_TEST_EXECUTABLE"):
        return Path(given)
    if os.environ.get("SHIPYARD_TEST_PACKAGE") == "1":
        return _built_once(tmp_path_factory)
    built = REPO / "dist" / "shipyard"
    sources = [
        f
        for name in PACKAGES
        for f in (REPO / name).rglob("*")
        if f.is_file() and "__pycache__" not in f.parts
    ]
    if built.exists() and built.stat().st_mtime >= max(f.stat().st_mtime for f in sources):
        return built
    why = "missing" if not built.exists() else "older than the sources"
    message = f"dist/shipyard is {why}: run ./dev package (or set SHIPYARD_TEST_PACKAGE=1)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every worker of this run shares (with xdist each has its own base temp, under
    one folder of the run), for the locks that let one worker build while the others wait."""
    shared = tmp_path_factory.getbasetemp()
    return shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared


@pytest.fixture(scope="session")
def lab_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The python-host-lab recipe's image (JupyterLab), built when missing: minutes, so here,
    not by ./dev before pytest (it overlaps other modules' tests), and by one worker at a time
    (tests/e2e/test_lab.py and tests/webui both use it)."""
    from kernelimages import FIXTURE_LAB_IMAGE

    with (_run_dir(tmp_path_factory) / "lab-image.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first builds; the others wait, then find it
        built = subprocess.run(
            [sys.executable, "-m", "shipyard", "image", "build", "python-host-lab", "--if-missing"],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    assert built.returncode == 0, f"could not build {FIXTURE_LAB_IMAGE}: {built.stderr[-4000:]}"
    return FIXTURE_LAB_IMAGE


def _built_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = _run_dir(tmp_path_factory)
    out = shared / "pyinstaller"
    with (shared / "pyinstaller.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds; the others wait, then reuse
        if not (out / "dist" / "shipyard").exists():
            build = subprocess.run(
                [
                    *(sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"),
                    *("--distpath", str(out / "dist"), "--workpath", str(out / "build")),
                    str(SPEC),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert build.returncode == 0, build.stderr[-4000:]
    return out / "dist" / "shipyard"
