"""`kill -9` of `shipyard up` in the middle of destroys and of creates (issue 8.5): after a
restart, within 30 s, no session is left between states and no container is left without an
active session. Real appliance, real containers."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sqlite3
import time

import docker
import pytest
import trio

from client.config import ClientConfig
from client.errors import ClientError
from client.sdk import Client
from shipyard.testing import Appliance, port_free, running_appliance, wait_for

pytestmark = pytest.mark.docker

SESSIONS = 10
SMALL = {"cpu": "0.1", "mem": "64m"}  # ten of them fit on any test machine
SETTLE = 30.0
BETWEEN = {"PENDING", "SCHEDULED", "PREPARING", "TERMINATING"}


def _client(appliance: Appliance) -> Client:
    return Client(ClientConfig.from_env(appliance.env()))


async def _sessions(api: Client) -> dict[str, dict[str, str]]:
    return {s["sessionName"]: s for s in await api.list_sessions(all=True)}


async def _until_any(api: Client, *statuses: str) -> None:
    """Poll: the sessions change in another process, so there is no event to await."""
    while True:
        if any(s["status"] in statuses for s in (await _sessions(api)).values()):
            return
        await trio.sleep(0.01)


def _kill_9(appliance: Appliance) -> None:
    """Kill `up` (its children follow, by PR_SET_PDEATHSIG)."""
    assert appliance.process is not None
    os.kill(appliance.process.pid, signal.SIGKILL)
    appliance.process.wait(timeout=10)
    appliance.process = None


def _left_behind(appliance: Appliance) -> dict[str, str]:
    """Once the children are gone too: the statuses they left in the database, by name."""
    wait_for(functools.partial(port_free, appliance.port), "the old control plane to stop")
    with contextlib.closing(sqlite3.connect(appliance.state_dir / "controlplane.db")) as db:
        return dict(db.execute("SELECT name, status FROM sessions").fetchall())


def _containers(appliance: Appliance) -> dict[str, str]:
    """Container id -> the session id it is labelled with, for every container of the node."""
    client = docker.from_env()
    try:
        found = client.containers.list(
            all=True, filters={"label": f"ai.shipyard.node-id={appliance.node_id}"}
        )
        return {c.id: c.labels.get("ai.shipyard.session-id", "") for c in found}
    finally:
        client.close()


def _settle(appliance: Appliance) -> dict[str, dict[str, str]]:
    """Wait (30 s at most) until nothing is between states and every container belongs to an
    active session, one container per session; the sessions then, by name."""
    state: dict[str, dict[str, str]] = {}

    def settled() -> bool:
        async def read() -> dict[str, dict[str, str]]:
            async with _client(appliance) as api:
                return await _sessions(api)

        state.clear()
        state.update(trio.run(read))
        if any(s["status"] in BETWEEN for s in state.values()):
            return False
        active = {s["sessionId"] for s in state.values() if s["status"] == "RUNNING"}
        owners = list(_containers(appliance).values())
        return set(owners) <= active and len(owners) == len(set(owners))  # one per session

    started = time.monotonic()
    try:
        wait_for(settled, "no session between states and no container without one", SETTLE)
    except AssertionError:
        detail = {n: (s["status"], s["statusInfo"]) for n, s in state.items()}
        raise AssertionError(f"not settled after {SETTLE:.0f} s: {detail}") from None
    print(f"settled {time.monotonic() - started:.1f} s after the restart")
    return state


def test_kill_9_during_destroys(test_image: str) -> None:
    names = [f"destroy-{i}" for i in range(SESSIONS)]
    with running_appliance() as appliance:

        async def create_all() -> None:
            async with _client(appliance) as api, trio.open_nursery() as nursery:
                for name in names:
                    nursery.start_soon(
                        functools.partial(api.create_session, "python", name=name, resources=SMALL)
                    )

        trio.run(create_all)
        assert len(_containers(appliance)) == SESSIONS

        async def destroy_all_and_kill() -> None:
            async with _client(appliance) as api, trio.open_nursery() as nursery:
                for name in names:
                    nursery.start_soon(_destroy, api, name)
                # kill as soon as the first destroy is under way
                await _until_any(api, "TERMINATING", "TERMINATED")
                _kill_9(appliance)
                nursery.cancel_scope.cancel()

        trio.run(destroy_all_and_kill)
        left = _left_behind(appliance)
        interrupted = [n for n, status in left.items() if status == "TERMINATING"]
        print(f"killed with {len(interrupted)} destroys under way: {left}")
        assert interrupted, f"the kill came after every destroy: {left}"

        appliance.start()
        after = _settle(appliance)
        for name in interrupted:
            assert after[name]["status"] == "TERMINATED", after[name]
        for name in names:  # a DELETE the kill cut off before it arrived leaves it RUNNING
            assert after[name]["status"] in ("TERMINATED", "RUNNING"), after[name]


async def _destroy(api: Client, name: str) -> None:
    with contextlib.suppress(ClientError):  # the kill cuts the answer off
        await api.destroy_session(name)


def test_kill_9_during_creates(test_image: str) -> None:
    names = [f"create-{i}" for i in range(SESSIONS)]
    with running_appliance() as appliance:

        async def create_all_and_kill() -> None:
            async with _client(appliance) as api, trio.open_nursery() as nursery:
                for name in names:
                    nursery.start_soon(_create, api, name)
                # kill once the first container is being made
                await _until_any(api, "PREPARING", "RUNNING")
                _kill_9(appliance)
                nursery.cancel_scope.cancel()

        trio.run(create_all_and_kill)
        left = _left_behind(appliance)
        interrupted = [n for n, status in left.items() if status in BETWEEN]
        print(f"killed with {len(interrupted)} creates under way: {left}")
        assert interrupted, f"the kill came after every create: {left}"

        appliance.start()
        after = _settle(appliance)
        # each interrupted start was adopted (its container was running) or made again
        statuses = {n: (after[n]["status"], after[n]["statusInfo"]) for n in left}
        assert {n: status for n, (status, _) in statuses.items()} == dict.fromkeys(
            left, "RUNNING"
        ), statuses
        running = {after[n]["sessionId"] for n in left}
        assert sorted(_containers(appliance).values()) == sorted(running)  # one each


async def _create(api: Client, name: str) -> None:
    with contextlib.suppress(ClientError):  # the kill cuts the answer off
        await api.create_session("python", name=name, resources=SMALL)
