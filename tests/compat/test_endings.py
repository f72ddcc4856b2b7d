"""Truthful endings (issue 9 item 5): a batch session says why it ended (its exit code, a signal,
the out-of-memory killer), keeps its exit code and logs after its container is gone, and a
destroy of an ended session answers as the 23.09 manager does (404)."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.testing import wait_for
from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]


def _batch(bai: BackendAI, name: str, command: str) -> dict[str, Any]:
    """Start a batch session with the official CLI and return its record once it ended."""
    created = bai(
        "session", "create", "--type", "batch", "-t", name, "-c", command, *SMALL, "python"
    )
    assert created.returncode == 0, created.stdout + created.stderr

    def ended() -> bool:
        return bai.api("GET", f"/session/{name}").json()["status"] == "TERMINATED"

    wait_for(ended, f"batch session {name} to end", timeout=60)
    [item] = [i for i in bai.json("ps", "--dead")["items"] if i["name"] == name]
    assert bai.appliance.containers(session_id=item["session_id"]) == []
    return dict(item)


def test_a_batch_that_exits_2_says_so_and_keeps_its_logs(bai: BackendAI) -> None:
    item = _batch(bai, "exits-two", "echo working; echo trouble >&2; exit 2")
    assert item["status_info"] == "the startup command failed with exit code 2"
    assert item["result"] == "FAILURE"
    info = bai.api("GET", "/session/exits-two").json()
    assert info["exitCode"] == 2
    assert "terminated by the user" not in [h["reason"] for h in info["statusHistory"]]

    logs = bai("session", "logs", "exits-two")  # the container is gone; its logs are not
    assert logs.returncode == 0, logs.stderr
    assert "working\n" in logs.stdout and "trouble\n" in logs.stdout

    again = bai("session", "destroy", "exits-two")  # already ended: not found, as 23.09 says
    assert again.returncode == 1
    assert "does not exist" in again.stdout + again.stderr


def test_a_batch_that_succeeds_and_one_killed_by_a_signal(bai: BackendAI) -> None:
    ok = _batch(bai, "succeeds", "echo done")
    assert (ok["status_info"], ok["result"]) == (
        "the startup command succeeded (exit code 0)",
        "SUCCESS",
    )
    killed = _batch(bai, "killed-term", "kill -TERM $$")
    assert killed["status_info"] == "the startup command was killed by SIGTERM (exit code 143)"
    assert killed["result"] == "FAILURE"


def test_a_batch_killed_for_memory_says_out_of_memory(bai: BackendAI) -> None:
    item = _batch(bai, "eats-memory", "python -c \"x = b'x' * (512 * 2**20)\"")
    assert item["status_info"] == (
        "the startup command was killed: out of memory (memory limit 128 MiB) (exit code 137)"
    )
    logs = bai("session", "logs", "eats-memory")
    assert "shipyard: killed: out of memory (memory limit 128 MiB)" in logs.stdout
