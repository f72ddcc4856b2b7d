"""The execute WebSocket against a real (fake) server that checks signatures like ours."""

from __future__ import annotations

from typing import Any

import pytest
from client_fakes import ACCESS_KEY, FakeAPI

from client.config import ClientConfig
from client.errors import APIError, ClientError
from client.sdk import Client


@pytest.mark.trio
async def test_frames_stream_until_finished_and_input_goes_back_raw(fake_api: FakeAPI) -> None:
    fake_api.frames = [
        {"status": "continued", "console": [["stdout", "name? "]], "exitCode": None},
        {"status": "waiting-input", "console": [], "options": {"is_password": False}},
        {"status": "finished", "console": [["stdout", "hi Ann\n"]], "exitCode": 0},
    ]
    asked: list[dict[str, Any]] = []

    async def answer(frame: dict[str, Any]) -> str:
        asked.append(frame)
        return "Ann"

    async with Client(ClientConfig.from_env()) as api:
        sid = "c1a2b3c4-0000-4000-8000-000000000001"
        async with api.execute_stream(sid, "query", "input()", on_input=answer) as frames:
            statuses = [frame["status"] async for frame in frames]
    assert statuses == ["continued", "waiting-input", "finished"]
    assert [f["status"] for f in asked] == ["waiting-input"]
    assert fake_api.first_frames == [{"code": "input()", "mode": "query", "options": {}}]
    assert fake_api.inputs == ["Ann"]  # a raw text frame, not JSON
    (upgrade,) = [r for r in fake_api.requests if r.method == "WS"]
    assert upgrade.target == f"/stream/session/{sid}/execute"
    assert "content-type" not in {k.lower() for k in upgrade.headers}


@pytest.mark.trio
async def test_batch_options_are_sent_as_given(fake_api: FakeAPI) -> None:
    options = {"clean": "*", "build": "*", "buildLog": False, "exec": "python x.py"}
    async with (
        Client(ClientConfig.from_env()) as api,
        api.execute_stream("sid", "batch", "", options) as frames,
    ):
        async for _ in frames:
            pass
    assert fake_api.first_frames == [{"code": "", "mode": "batch", "options": options}]


@pytest.mark.trio
async def test_a_rejected_upgrade_is_an_api_error(fake_api: FakeAPI) -> None:
    config = ClientConfig(fake_api.endpoint, ACCESS_KEY, "the wrong secret")
    async with Client(config) as api:
        with pytest.raises(APIError) as caught:
            async with api.execute_stream("sid", "query", "1") as frames:
                async for _ in frames:
                    pass
    assert (caught.value.status, caught.value.slug) == (401, "auth-failed")


@pytest.mark.trio
async def test_a_stream_that_ends_without_finished_is_an_error(fake_api: FakeAPI) -> None:
    fake_api.frames = [{"status": "continued", "console": [["stdout", "partial"]]}]
    async with Client(ClientConfig.from_env()) as api:
        with pytest.raises(ClientError, match=r"closed before the run finished \(code 1000"):
            async with api.execute_stream("sid", "query", "1") as frames:
                async for _ in frames:
                    pass
