"""Session file and lifecycle routes (controlplane/api/session_files.py): bad paths are refused
before any node is asked, renames keep names unique, interrupts reach the kernel's node."""

from __future__ import annotations

import json

import pytest

from controlplane.testing import FakeNode
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


async def _create(api: API, name: str) -> str:
    body = {"image": "python", "name": name, "config": {"resources": {"cpu": "0.5"}}}
    created = await api.call("POST", "/session", body)
    assert created.body["status"] == "RUNNING"
    return str(created.body["sessionId"])


async def test_ls_answers_the_managers_shape(api: API, node: FakeNode) -> None:
    await _create(api, "files-1")
    listed = await api.call("GET", "/session/files-1/files", {"path": "/home/work"})
    assert listed.status == 200
    assert listed.body["errors"] == "" and listed.body["abspath"] == "/home/work"
    [entry] = json.loads(listed.body["files"])
    assert entry["filename"] == "x.py" and entry["mode"] == "-rw-r--r--"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("files", {"path": "/etc"}),
        ("files", {"path": "../.."}),
        ("files", {"path": 7}),
        ("download", {"files": ["/etc/passwd"]}),
        ("download", {"files": ["sub/../../x"]}),
        ("download", {"files": []}),
        ("download", {"files": ["a", "b", "c", "d", "e", "f"]}),
        ("download", {}),
    ],
)
async def test_bad_paths_are_400_before_the_node_is_asked(
    api: API, node: FakeNode, route: str, body: object
) -> None:
    await _create(api, "files-2")
    response = await api.call("GET", f"/session/files-2/{route}", body)
    assert response.status == 400, response.body
    assert response.content_type == "application/problem+json"


async def test_files_of_a_session_that_is_not_running_are_409(api: API, node: FakeNode) -> None:
    await _create(api, "files-3")
    assert (await api.call("DELETE", "/session/files-3")).status == 200
    response = await api.call("GET", "/session/files-3/files", {"path": "."})
    assert response.status == 409


async def test_rename_keeps_names_unique(api: API, node: FakeNode) -> None:
    first = await _create(api, "name-1")
    await _create(api, "name-2")
    taken = await api.call("POST", "/session/name-1/rename?name=name-2")
    assert taken.status == 400 and taken.body["type"].endswith("session-already-exists")
    bad = await api.call("POST", "/session/name-1/rename?name=x")
    assert bad.status == 400
    done = await api.call("POST", "/session/name-1/rename?name=name-3")
    assert done.status == 204
    assert (await api.call("GET", "/session/name-3")).body["sessionId"] == first


async def test_interrupt_reaches_the_kernels_node(api: API, node: FakeNode) -> None:
    await _create(api, "intr-1")
    response = await api.call("POST", "/session/intr-1/interrupt")
    assert response.status == 204
    [kernel] = node.kernels
    assert node.interrupts == [kernel]


async def test_complete_answers_the_managers_shape(api: API, node: FakeNode) -> None:
    await _create(api, "comp-1")
    body = {"code": "pri", "options": {"row": 0, "col": 3, "line": "pri", "post": ""}}
    response = await api.call("POST", "/session/comp-1/complete", body)
    assert response.body == {"result": {"status": "finished", "completions": ["pri_done"]}}


async def test_restart_reaches_the_kernels_node_and_keeps_the_session(
    api: API, node: FakeNode
) -> None:
    await _create(api, "again-1")
    response = await api.call("PATCH", "/session/again-1")
    assert response.status == 204
    [kernel] = node.kernels
    assert node.restarts == [kernel]
    assert (await api.call("GET", "/session/again-1")).body["status"] == "RUNNING"
