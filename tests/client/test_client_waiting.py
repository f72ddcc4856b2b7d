"""Why a session waits, as `shipyard run` shows it (client/_waiting.py): the creation's own
event is no reason, every later reason is a line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from client._waiting import _show_reasons, _StatusLine


async def _events(*items: tuple[str, Any]) -> AsyncIterator[tuple[str, Any]]:
    for item in items:
        yield item


@pytest.mark.trio
async def test_each_new_reason_of_this_session_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def enqueued(name: str, reason: str) -> tuple[str, Any]:
        return "session_enqueued", {"sessionName": name, "reason": reason}

    events = _events(
        enqueued("run-1", "enqueued"),
        enqueued("other", "waiting for a node to connect"),
        enqueued("run-1", "waiting for resources: needs cpu=1"),
        ("session_scheduled", {"sessionName": "run-1", "reason": "placed on node i-a"}),
        enqueued("run-1", "waiting for a connected node that has the image x"),
    )
    line = _StatusLine()
    await _show_reasons(events, "run-1", line)
    line.end()
    assert capsys.readouterr().err == (
        "shipyard: session run-1 is pending: waiting for resources: needs cpu=1\n"
        "shipyard: session run-1 is pending: waiting for a connected node that has the image x\n"
    )
