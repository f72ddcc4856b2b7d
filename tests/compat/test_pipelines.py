"""Batch pipelines with the official client's create flags (`--depends`, `--starts-at`,
docs/backendai-api.md §13.5) and Shipyard's own CLI (issue 11 item 6). Scheduled starts are
tested against a controllable clock in tests/controlplane/test_pipelines.py; here only that the
flag reaches the server and holds the session."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.testing import wait_for
from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]
FAR = "2099-01-01T00:00:00+00:00"


def _info(bai: BackendAI, name: str) -> dict[str, Any]:
    info: dict[str, Any] = bai.api("GET", f"/session/{name}").json()
    return info


def _ended(bai: BackendAI, name: str) -> dict[str, Any]:
    wait_for(
        lambda: _info(bai, name)["status"] in ("TERMINATED", "CANCELLED"), f"{name} to end", 60
    )
    return _info(bai, name)


def _batch(bai: BackendAI, name: str, command: str, *flags: str) -> None:
    created = bai("session", "create", "--type", "batch", "-t", name, "-c", command, *flags)
    assert created.returncode == 0, created.stdout + created.stderr


def test_backendai_depends_starts_after_success_and_cancels_after_failure(
    bai: BackendAI,
) -> None:
    _batch(bai, "pipe-a", "sleep 10; echo a-done", *SMALL, "python")
    _batch(bai, "pipe-b", "echo b-ran", "--depends", "pipe-a", "--enqueue-only", *SMALL, "python")
    b = _ended(bai, "pipe-b")
    a = _info(bai, "pipe-a")
    assert (a["result"], b["result"]) == ("SUCCESS", "SUCCESS")
    history = {h["status"]: h for h in b["statusHistory"]}
    assert "waiting for dependencies to succeed: pipe-a" in [
        h["reason"] for h in b["statusHistory"]
    ]
    # placed once pipe-a's result was in (it is recorded as pipe-a starts terminating)
    [a_ending] = [h for h in a["statusHistory"] if h["status"] == "TERMINATING"]
    assert history["SCHEDULED"]["at"] >= a_ending["at"]
    logs = bai("session", "logs", "pipe-b")
    assert "b-ran" in logs.stdout

    _batch(bai, "pipe-c", "exit 1", *SMALL, "python")
    _batch(bai, "pipe-d", "echo never", "--depends", "pipe-c", "--enqueue-only", *SMALL, "python")
    d = _ended(bai, "pipe-d")
    assert d["status"] == "CANCELLED"
    assert d["statusInfo"] == (
        "dependency pipe-c did not succeed (the startup command failed with exit code 1)"
    )

    unknown = bai("session", "create", "--depends", "no-such-job", *SMALL, "python")
    assert unknown.returncode != 0
    assert "Unknown session ID or name in the dependency list" in unknown.stdout + unknown.stderr


def test_backendai_starts_at_holds_the_session(bai: BackendAI) -> None:
    _batch(bai, "pipe-later", "echo x", "--starts-at", FAR, "--enqueue-only", *SMALL, "python")
    wait_for(
        lambda: _info(bai, "pipe-later")["statusInfo"].startswith("scheduled to start at"),
        "the scheduler to hold it",
    )
    assert _info(bai, "pipe-later")["statusInfo"] == f"scheduled to start at {FAR}"
    interactive = bai("session", "create", "--starts-at", "1h", *SMALL, "python")
    assert interactive.returncode != 0  # batch only, as the 23.09 manager says


def test_shipyard_cli_depends_and_starts_at(bai: BackendAI) -> None:
    cli, cwd = bai.appliance.cli, str(bai.workdir)
    made = cli("session", "create", "--type", "batch", "-c", "exit 4", "-n", "sy-a", *SMALL)
    assert made.returncode == 0, made.stderr
    ran = cli("run", *SMALL, "--depends", "sy-a", "-c", "print('never')", cwd=cwd)
    assert ran.returncode != 0
    assert "never" not in ran.stdout
    assert "dependency sy-a did not succeed" in ran.stderr

    later = cli(
        "session", "create", "--type", "batch", "-c", "true", "-n", "sy-later",
        "--starts-at", FAR, "--enqueue-only", *SMALL,
    )  # fmt: skip
    assert later.returncode == 0, later.stderr
    wait_for(
        lambda: _info(bai, "sy-later")["statusInfo"] == f"scheduled to start at {FAR}",
        "the scheduler to hold it",
    )
