"""The official Backend.AI client (`backend.ai`, backend.ai-client 23.9.10) against a real
appliance: `shipyard up` with `python` aliased to the test image.

The CLI lives in its own venv (./dev creates .state/bai-venv and exports SHIPYARD_TEST_BAI).
It runs with nothing in its environment but the BACKEND_* lines of the client.env that
`shipyard up` writes, from a directory without a .env file (the client loads one from the
working directory upward, and it would override the environment).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

import wire
from shipyard.testing import TEST_IMAGE, Appliance, running_appliance

CLI_TIMEOUT = 120.0


@dataclass
class BackendAI:
    """Runs the real `backend.ai` CLI as a user who sourced client.env would."""

    executable: Path
    appliance: Appliance
    workdir: Path

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in self.appliance.env().items() if k.startswith("BACKEND_")}
        assert set(env) >= {"BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY"}
        env.update(overrides)
        return env

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        cwd: Path | None = None,
        timeout: float = CLI_TIMEOUT,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.executable), *args],
            env=self.env(**env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or self.workdir,
        )

    def json(self, *args: str, **env: str) -> Any:
        """`backend.ai --output json ARGS`, which must succeed."""
        result = self("--output", "json", *args, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    def python(self, code: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run `code` with the client venv's interpreter (to drive the CLI in-process)."""
        return subprocess.run(
            [str(self.executable.with_name("python")), "-c", code],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
        )

    def api(self, method: str, path: str, body: Any = None, **keys: str) -> httpx.Response:
        """A request signed as the official client signs it, for set-up steps the CLI has no
        command for (creating a user keypair, cleaning up)."""
        env = self.env(**keys)
        endpoint = env["BACKEND_ENDPOINT"]
        date = datetime.now(UTC).isoformat()
        content_type = "application/json" if body is not None else "text/plain"
        signature = wire.sign(
            method=method,
            rel_url=path,
            date=date,
            host=endpoint.split("://", 1)[1],
            content_type=content_type,
            version=wire.API_VERSION,
            secret_key=env["BACKEND_SECRET_KEY"],
        )
        return httpx.request(
            method,
            endpoint + path,
            content=json.dumps(body).encode() if body is not None else b"",
            headers={
                "Date": date,
                "X-BackendAI-Version": wire.API_VERSION,
                "Content-Type": content_type,
                "Authorization": wire.authorization_header(env["BACKEND_ACCESS_KEY"], signature),
            },
            timeout=60,
        )


@pytest.fixture(scope="session")
def bai_executable() -> Path:
    configured = os.environ.get("SHIPYARD_TEST_BAI")
    if not configured:
        message = (
            "SHIPYARD_TEST_BAI is not set: ./dev test installs backend.ai-client 23.9.10 into"
            " .state/bai-venv and points it at .state/bai-venv/bin/backend.ai"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    path = Path(configured)
    if not os.access(path, os.X_OK):
        pytest.fail(f"SHIPYARD_TEST_BAI={configured} is not an executable (run ./dev test)")
    return path


@pytest.fixture(scope="session")
def compat_appliance(bai_executable: Path) -> Iterator[Appliance]:
    client = docker.from_env()
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{TEST_IMAGE} is missing: ./dev test builds it")
    finally:
        client.close()
    with running_appliance() as appliance:
        yield appliance


@pytest.fixture
def bai(bai_executable: Path, compat_appliance: Appliance, tmp_path: Path) -> Iterator[BackendAI]:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    for parent in [workdir, *workdir.parents]:
        assert not (parent / ".env").exists(), f"{parent / '.env'} would override client.env"
    runner = BackendAI(bai_executable, compat_appliance, workdir)
    try:
        yield runner
    finally:
        # leave no session behind: the test node has few cores, and `run` waits for room
        listed = runner.api("GET", "/session")
        for item in listed.json().get("items", []):
            runner.api("DELETE", f"/session/{item['sessionId']}?forced=true")
