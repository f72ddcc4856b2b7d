"""A session that cannot be placed: its reason reaches the official client's event stream and
`shipyard run`'s stderr, and --max-wait is honoured by both CLIs (issue 9 item 7).

The node is filled by one session holding all its cpu, so the next one waits for resources."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]
WAITING = re.compile(
    r"waiting for resources: needs cpu=0\.25 .*; node \S+ has cpu=0 .*\(short of cpu\)"
)


@pytest.fixture
def full_node(bai: BackendAI) -> Iterator[str]:
    """The name of a running session that holds every cpu of the node."""
    [agent] = [
        a for a in bai.json("admin", "agent", "list")["items"] if a["id"] == bai.appliance.node_id
    ]
    # what other tests' sessions leave free on the shared appliance
    used = Decimal(agent["occupied_slots"].get("cpu", "0"))
    cpu = Decimal(agent["available_slots"]["cpu"]) - used
    created = bai(
        "session", "create", "-t", "filler", "-r", f"cpu={cpu}", "-r", "mem=128m", "python"
    )
    assert created.returncode == 0, created.stderr
    yield "filler"


def test_backendai_max_wait_and_the_reason_in_session_events(
    bai: BackendAI, full_node: str
) -> None:
    timed_out = bai("session", "create", "-t", "waiter", "--max-wait", "2", *SMALL, "python")
    assert timed_out.returncode == 0, timed_out.stderr
    assert "is still on the job queue." in timed_out.stderr

    run = bai("run", "--rm", "--max-wait", "2", *SMALL, "python", "-c", "print('never')")
    assert run.returncode == 0, run.stderr
    assert "is still on the job queue." in run.stderr
    assert "never" not in run.stdout

    listener = subprocess.Popen(
        [str(bai.executable), "session", "events", "waiter"],
        env=bai.env(),
        cwd=bai.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert listener.stdout is not None
        # a stream that opens on a pending session starts by saying why it waits
        first = listener.stdout.readline()
        assert first.startswith("session_enqueued "), first
        assert '"sessionName": "waiter"' in first
        assert WAITING.search(first), first
        # freeing the node places it: the stream goes on with the start
        assert bai("rm", full_node).returncode == 0
        seen = [listener.stdout.readline().split(" ", 1)[0] for _ in range(3)]
        assert seen == ["session_scheduled", "kernel_preparing", "kernel_creating"], seen
    finally:
        listener.kill()
        listener.communicate()


def test_shipyard_run_shows_why_it_waits_then_runs(bai: BackendAI, full_node: str) -> None:
    cli = bai.appliance.cli
    gave_up = cli("run", "--max-wait", "2", *SMALL, "-c", "print('never')")
    assert gave_up.returncode == 1
    assert gave_up.stdout == ""
    lines = gave_up.stderr.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"shipyard: session run-\w+ is pending: .*", lines[0])
    assert WAITING.search(lines[0]), lines[0]
    assert re.fullmatch(r"shipyard: error: session run-\w+ did not start within 2 s: .*", lines[1])
    assert WAITING.search(lines[1]), lines[1]
    # shipyard run removes what it made, even when it gave up
    names = [s["sessionName"] for s in bai.api("GET", "/session").json()["items"]]
    assert names == [full_node]

    waiting = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "run", "--max-wait", "60", *SMALL, "-c", "print(42)"],
        env=bai.appliance.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr is not None
        pending = waiting.stderr.readline()  # EOF (and a failure) at the latest after 60 s
        assert WAITING.search(pending), pending
        assert bai("rm", full_node).returncode == 0
        out, err = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert (waiting.returncode, out, err) == (0, "42\n", "")
