"""Runs of the polling execute API: bound to their session and its owner (issue 8.4), closed by
expiry and by the end of their session, and held in bounded memory (issue 8.6)."""

from __future__ import annotations

from typing import Any

import pytest

import wire
from controlplane.api import session as session_api
from controlplane.runs import MAX_BUFFERED, RunBuffer, dropped_marker
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_api, "HTTP_CHUNK_WAIT", 0.2)


async def _keypair(api: API, email: str) -> Any:
    created = await api.call("POST", "/admin/keypairs", {"user": email})
    return type(api.admin)(
        access_key=created.body["accessKey"], secret_key=created.body["secretKey"]
    )


async def _create(api: API, name: str, keypair: Any = None) -> None:
    body = {"image": "python", "name": name, "config": {"resources": {"cpu": "0.5"}}}
    created = await api.call("POST", "/session", body, keypair=keypair)
    assert created.body["status"] == "RUNNING"


async def _held_run(api: API, node: FakeNode, session: str, keypair: Any = None) -> str:
    node.hold_runs = True
    await _create(api, session, keypair)
    started = await api.call(
        "POST", f"/session/{session}", {"mode": "query", "code": "input()"}, keypair=keypair
    )
    assert started.body["result"]["status"] == "continued"
    return str(started.body["result"]["runId"])


async def test_another_users_run_is_not_found(api: API, node: FakeNode) -> None:
    alice, bob = await _keypair(api, "alice@example.com"), await _keypair(api, "bob@example.com")
    run_id = await _held_run(api, node, "alice-1", alice)
    [held] = node.runs
    node.output(wire.RunOutput(held, "stdout", "alice's secret\n"))
    await _create(api, "bob-1", bob)

    # Bob names Alice's run through his own session: no such run, nothing read, nothing fed
    for body in (
        {"mode": "continue", "runId": run_id},
        {"mode": "input", "runId": run_id, "code": "rm -rf /"},
    ):
        response = await api.call("POST", "/session/bob-1", body, keypair=bob)
        assert response.status == 404, response.body
        assert "secret" not in str(response.body)
    # ... or through hers (which he cannot see)
    response = await api.call(
        "POST", "/session/alice-1", {"mode": "continue", "runId": run_id}, keypair=bob
    )
    assert response.status == 404
    assert node.inputs == []

    # the same run id from another session of Alice's is not it either
    await _create(api, "alice-2", alice)
    other = await api.call(
        "POST", "/session/alice-2", {"mode": "continue", "runId": run_id}, keypair=alice
    )
    assert other.status == 404

    mine = await api.call(
        "POST", "/session/alice-1", {"mode": "continue", "runId": run_id}, keypair=alice
    )
    assert mine.body["result"]["console"] == [["stdout", "alice's secret\n"]]


@pytest.mark.parametrize(
    ("run_id", "status"), [(None, 404), ("nope", 404), (7, 400), (["x"], 400), ({"a": 1}, 400)]
)
async def test_unknown_run_ids_are_404(
    api: API, node: FakeNode, run_id: object, status: int
) -> None:
    """No such run is 404; a run id that is no string is a bad request (400)."""
    await _create(api, "sess-1")
    response = await api.call("POST", "/session/sess-1", {"mode": "continue", "runId": run_id})
    assert response.status == status
    assert response.content_type == "application/problem+json"


async def test_expiry_closes_the_run(api: API, node: FakeNode) -> None:
    run_id = await _held_run(api, node, "idle-1")
    assert len(api.core.http_runs) == 1 and len(api.core.hub.run_buffers()) == 1
    api.core.http_runs.idle_expiry = 0
    api.core.http_runs.expire()
    assert len(api.core.http_runs) == 0
    assert api.core.hub.run_buffers() == []  # no longer routed, its buffer dropped
    gone = await api.call("POST", "/session/idle-1", {"mode": "continue", "runId": run_id})
    assert gone.status == 404


async def test_ending_the_session_ends_its_runs(api: API, node: FakeNode) -> None:
    run_id = await _held_run(api, node, "end-1")
    [held] = node.runs
    node.output(wire.RunOutput(held, "stdout", "x" * 100_000))
    assert (await api.call("DELETE", "/session/end-1")).status == 200
    assert len(api.core.http_runs) == 0
    assert api.core.hub.run_buffers() == []
    gone = await api.call("POST", "/session/end-1", {"mode": "continue", "runId": run_id})
    assert gone.status in (404, 409)  # the session is gone first
    # the running session the runs were sent to was kept in memory (controlplane/sessionrefs.py):
    # its end is seen at once, and no new run reaches the node
    again = await api.call("POST", "/session/end-1", {"mode": "query", "code": "1"})
    assert again.status == 409, again.body
    assert len(node.runs) == 1


async def test_output_nobody_reads_is_bounded_with_a_marker(api: API, node: FakeNode) -> None:
    run_id = await _held_run(api, node, "flood-1")
    [held] = node.runs
    chunk = "y" * 2**20
    for _ in range(20):  # 20 MiB that nobody polls
        node.output(wire.RunOutput(held, "stdout", chunk))
    [buffer] = api.core.hub.run_buffers()
    assert buffer.buffered_bytes <= MAX_BUFFERED
    node.output(wire.RunOutput(held, "finished", exit_code=0))

    text, status = "", "continued"
    while status != "finished":
        response = await api.call("POST", "/session/flood-1", {"mode": "continue", "runId": run_id})
        result = response.body["result"]
        status = result["status"]
        text += "".join(data for _, data in result["console"])
    dropped = 20 * 2**20 - MAX_BUFFERED
    assert text == "y" * MAX_BUFFERED + dropped_marker(dropped)
    assert api.core.hub.run_buffers() == []  # read to the end: freed


def test_buffer_marks_each_gap_where_it_was() -> None:
    buffer = RunBuffer("r", "n", limit=100)

    def take_all() -> list[tuple[str, str]]:
        taken = []
        while (item := buffer.take_nowait()) is not None:
            taken.append((item.kind, item.data))
        return taken

    for data in ("x" * 98, "abc", "def"):
        buffer.put(wire.RunOutput("r", "stdout", data))
    # what fits is kept, then the reader is told how much is missing
    assert take_all() == [("stdout", "x" * 98), ("stdout", "ab"), ("stderr", dropped_marker(4))]
    buffer.put(wire.RunOutput("r", "stderr", "later"))
    buffer.put(wire.RunOutput("r", "stdout", "z" * 200))
    buffer.put(wire.RunOutput("r", "finished", exit_code=0))
    assert take_all() == [
        ("stderr", "later"),
        ("stdout", "z" * 95),
        ("stderr", dropped_marker(105)),
        ("finished", ""),
    ]
    buffer.close()
    assert buffer.buffered_bytes == 0


async def test_client_chosen_run_ids_are_per_session(api: API, node: FakeNode) -> None:
    """A client-chosen runId names the run within its session only: two sessions may use the
    same one, and a second run under an id in progress is refused before it starts."""
    node.hold_runs = True
    await _create(api, "mine-1")
    await _create(api, "mine-2")
    for name in ("mine-1", "mine-2"):
        started = await api.call(
            "POST", f"/session/{name}", {"mode": "query", "code": "input()", "runId": "job"}
        )
        assert started.body["result"]["runId"] == "job"
    first, second = node.runs
    assert first != second and "job" not in (first, second)  # the node sees unique ids
    node.output(wire.RunOutput(second, "stdout", "from two\n"))
    node.output(wire.RunOutput(first, "stdout", "from one\n"))

    busy = await api.call("POST", "/session/mine-1", {"mode": "query", "code": "1", "runId": "job"})
    assert busy.status == 400 and "in progress" in busy.body["msg"]
    assert len(node.runs) == 2  # refused before anything reached the kernel

    one = await api.call("POST", "/session/mine-1", {"mode": "continue", "runId": "job"})
    assert one.body["result"]["console"] == [["stdout", "from one\n"]]
    two = await api.call("POST", "/session/mine-2", {"mode": "continue", "runId": "job"})
    assert two.body["result"]["console"] == [["stdout", "from two\n"]]


@pytest.mark.parametrize("run_id", ["", "a b", "x" * 65, "tab\t"])
async def test_unusable_client_run_ids_are_400(api: API, node: FakeNode, run_id: str) -> None:
    await _create(api, "bad-ids")
    response = await api.call(
        "POST", "/session/bad-ids", {"mode": "query", "code": "1", "runId": run_id}
    )
    assert response.status == 400
    assert response.content_type == "application/problem+json"
