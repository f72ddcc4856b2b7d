"""§16 of docs/backendai-api.md: values that make official console commands crash on a real
manager. Each command here runs in console mode (not --output json), as a person would, and must
end without a traceback."""

from __future__ import annotations

import pytest

from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]


def _clean(result_stdout: str, result_stderr: str) -> None:
    assert "Traceback" not in result_stdout + result_stderr
    assert "Error" not in result_stderr.replace("BackendAPIError", "")


def test_console_commands_read_what_we_send(bai: BackendAI) -> None:
    created = bai("session", "create", "-t", "console-1", *SMALL, "python")
    assert created.returncode == 0, created.stderr
    session_id = bai.api("GET", "/session/console-1").json()["sessionId"]

    for command in (
        ["session", "info", session_id],  # containers' live_stat / last_stat
        ["admin", "agent", "info", bai.appliance.node_id],  # the agent's live_stat
        ["admin", "agent", "list"],
        ["admin", "keypair-resource-policy", "list"],  # null limits would crash it
        ["admin", "keypair-resource-policy", "info", "default"],
        ["admin", "keypair", "list"],
        ["ps", "--detail"],
    ):
        result = bai(*command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        _clean(result.stdout, result.stderr)
