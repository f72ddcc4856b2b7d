"""Background jobs that fail: logged with their session, the session says why it ended, and the
control plane keeps serving (issue 7.5)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from controlplane import lifecycle
from controlplane.db.models import Session
from controlplane.errors import NodeUnavailable, SessionNotRunning
from controlplane.execution import execute_collect
from controlplane.testing import FakeNode
from tests.controlplane.conftest import API

pytestmark = pytest.mark.anyio


async def _status(api: API, name: str) -> tuple[str, str]:
    info = await api.call("GET", f"/session/{name}")
    return info.body["status"], info.body["statusInfo"]


async def _wait_status(api: API, name: str, *statuses: str) -> None:
    async with api.core.events.subscribe() as events:
        if (await _status(api, name))[0] in statuses:
            return
        with anyio.fail_after(10):
            async for event in events:
                if event.session_name == name and event.status in statuses:
                    return


class _Failures(logging.Handler):
    """The background-job failures Core logs, with an event for the first one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.logged = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("background job"):
            self.records.append(record)
            self.logged.set()


@pytest.fixture
def failures() -> Iterator[_Failures]:
    handler = _Failures()
    logger = logging.getLogger("controlplane.core")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def _logged_failure(failures: _Failures, job: str) -> logging.LogRecord:
    with anyio.fail_after(10):
        await failures.logged.wait()
    [failure] = failures.records
    assert failure.getMessage().startswith(f"background job {job} failed")
    return failure


async def _still_serves(api: API, node: FakeNode, name: str) -> None:
    created = await api.call("POST", "/session", {"image": "python", "name": name})
    assert (created.status, created.body["status"]) == (201, "RUNNING")
    assert (await api.call("DELETE", f"/session/{name}")).status == 200


async def test_node_killed_in_the_middle_of_a_start(
    api: API, node: FakeNode, failures: _Failures
) -> None:
    """The user ends the session while its container is being made; the node answers the
    create and is killed, so removing that container fails in the background job."""

    async def destroyed_then_node_dies() -> None:
        assert (await api.call("DELETE", "/session/doomed-1")).status == 200
        node.die_after_create = True

    node.on_create = destroyed_then_node_dies
    created = await api.call("POST", "/session", {"image": "python", "name": "doomed-1"})
    assert created.body["status"] in ("TERMINATING", "TERMINATED")
    failure = await _logged_failure(failures, "start_kernel")
    assert failure.levelno == logging.ERROR
    assert created.body["sessionId"] in failure.getMessage()
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], NodeUnavailable)
    assert await _status(api, "doomed-1") == ("TERMINATED", "terminated by the user")

    # the node comes back (as a restarted node would) and the control plane serves on
    node.on_create = None
    await node.connect()
    await _still_serves(api, node, "after-1")


async def test_node_killed_before_it_answers_the_create(api: API, node: FakeNode) -> None:
    """The link drops with the create sent: the container may exist, so the session waits for
    the node to come back (adopted, or started again) instead of failing."""

    async def node_dies() -> None:
        node.die()

    node.on_create = node_dies
    body = {"image": "python", "name": "doomed-2", "enqueueOnly": True}
    async with api.core.events.subscribe() as events:
        assert (await api.call("POST", "/session", body)).status == 201
        with anyio.fail_after(10):
            async for event in events:
                if event.session_name == "doomed-2" and event.status not in (
                    "PENDING",
                    "SCHEDULED",
                    "PREPARING",
                ):
                    raise AssertionError(f"it went {event.status}: {event.reason}")
                if event.session_name == "doomed-2" and "disconnected" in event.reason:
                    break
    assert (event.status, event.reason) == (
        "PENDING",
        "node i-fake disconnected while starting; retried or adopted",
    )
    # (the scheduler's next pass may already have said why it waits now: no node connected)
    assert (await _status(api, "doomed-2"))[0] == "PENDING"
    node.on_create = None
    await node.connect()
    await _wait_status(api, "doomed-2", "RUNNING")
    await _still_serves(api, node, "after-2")


async def test_batch_session_destroyed_while_it_runs(
    api: API, node: FakeNode, monkeypatch: pytest.MonkeyPatch, failures: _Failures
) -> None:
    """Destroyed between its start and its command: the run finds no kernel
    (SessionNotRunning) in the background job."""

    async def destroyed_first(_: object, session: Session, *args: Any, **kw: Any) -> Any:
        assert (await api.call("DELETE", f"/session/{session.name}")).status == 200
        return await execute_collect(api.core, session, *args, **kw)

    monkeypatch.setattr(lifecycle, "execute_collect", destroyed_first)
    body = {"image": "python", "name": "batch-1", "type": "batch", "startupCommand": "true"}
    created = await api.call("POST", "/session", body)
    assert created.status == 201
    failure = await _logged_failure(failures, "start_kernel")  # its batch run is part of it
    assert created.body["sessionId"] in failure.getMessage()
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], SessionNotRunning)
    assert await _status(api, "batch-1") == ("TERMINATED", "terminated by the user")
    monkeypatch.undo()
    await _still_serves(api, node, "after-3")


async def test_a_failed_job_puts_its_live_session_in_error(api: API, node: FakeNode) -> None:
    created = await api.call("POST", "/session", {"image": "python", "name": "live-1"})
    session_id = uuid.UUID(created.body["sessionId"])

    async def broken() -> None:
        raise RuntimeError("the disk is on fire")

    api.core.spawn(broken, session_id=session_id)
    await _wait_status(api, "live-1", "ERROR")
    assert await _status(api, "live-1") == ("ERROR", "broken failed: the disk is on fire")
    await _still_serves(api, node, "after-4")
