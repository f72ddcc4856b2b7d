"""The SDK's polling execute API with run ids the script chooses itself (docs/backendai-api.md
§6.1 "HTTP execute API"; issue 9 item 2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]

# prints, then stays busy long enough that the first answer can only be "continued"
CODE = "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')\n"
SDK_RUN = """
import json, sys
from ai.backend.client.session import Session

name, run_id = sys.argv[1], sys.argv[2]
steps = []
with Session() as api:
    cs = api.ComputeSession(name)
    result = cs.execute(run_id, CODE, mode="query")
    steps.append(result)
    while result["status"] != "finished":
        result = cs.execute(result["runId"] if run_id is None else run_id, "", mode="continue")
        steps.append(result)
print(json.dumps(steps))
"""


def _sdk_run(bai: BackendAI, name: str, run_id: str | None) -> list[dict[str, Any]]:
    code = (
        SDK_RUN.replace("CODE", repr(CODE))
        .replace("sys.argv[1]", repr(name))
        .replace("sys.argv[2]", repr(run_id))
    )
    result = bai.python(code)
    assert result.returncode == 0, result.stdout + result.stderr
    steps: list[dict[str, Any]] = json.loads(result.stdout.splitlines()[-1])
    return steps


def _stdout(steps: list[dict[str, Any]]) -> str:
    return "".join(data for step in steps for kind, data in step["console"] if kind == "stdout")


def test_query_then_continue_with_the_clients_own_run_id(bai: BackendAI) -> None:
    created = bai("session", "create", "-t", "runid-1", *SMALL, "python")
    assert created.returncode == 0, created.stderr

    steps = _sdk_run(bai, "runid-1", "my-run.1")
    assert steps[0]["status"] == "continued"
    assert len(steps) >= 2  # at least one continue under the client's id
    assert [s["runId"] for s in steps] == ["my-run.1"] * len(steps)
    assert (steps[-1]["status"], steps[-1]["exitCode"]) == ("finished", 0)
    assert _stdout(steps) == "first\nsecond\n"

    # the run ended: the same id can name a new run in this session
    again = _sdk_run(bai, "runid-1", "my-run.1")
    assert _stdout(again) == "first\nsecond\n"


def test_a_null_run_id_gets_one_from_the_server(bai: BackendAI) -> None:
    created = bai("session", "create", "-t", "runid-2", *SMALL, "python")
    assert created.returncode == 0, created.stderr

    steps = _sdk_run(bai, "runid-2", None)
    assigned = steps[0]["runId"]
    assert isinstance(assigned, str) and assigned
    assert [s["runId"] for s in steps] == [assigned] * len(steps)
    assert steps[-1]["status"] == "finished"
    assert _stdout(steps) == "first\nsecond\n"
