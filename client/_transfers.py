"""Uploads (tus PATCHes) and downloads (ranged GETs) of folder files, resumed after a dropped
connection, with a progress callback. A file is read and written one chunk at a time, never
held whole in memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

from client.errors import APIError, ClientError
from client.sdk import Client

CHUNK = 4 << 20  # one tus PATCH: what the control plane may buffer at once
RETRIES = 10
Progress = Callable[[int], None]  # called with the bytes done so far


def _folder(name: str) -> str:
    return f"/folders/{quote(name, safe='')}"


def _check(response: httpx.Response, *expected: int) -> None:
    if response.status_code not in expected:
        raise APIError.from_response(response.status_code, response.reason_phrase, response.content)


async def _retrying(what: str, attempt: int, exc: Exception) -> None:
    if attempt >= RETRIES:
        raise ClientError(f"{what} failed {RETRIES} times, last: {exc}") from exc
    await trio.sleep(min(0.2 * 2**attempt, 5.0))


async def upload(
    api: Client, folder: str, local: Path, remote: str, progress: Progress = lambda n: None
) -> None:
    size = (await trio.to_thread.run_sync(local.stat)).st_size
    grant: dict[str, Any] = await api.request(
        "POST", f"{_folder(folder)}/request-upload", body={"path": remote, "size": size}
    )
    url, params = grant["url"], {"token": grant["token"]}
    offset, attempt = 0, 0
    with local.open("rb") as source:
        while offset < size:
            source.seek(offset)
            chunk = await trio.to_thread.run_sync(source.read, CHUNK)
            headers = {
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            }
            try:
                response = await api.transfers.patch(
                    url, params=params, content=chunk, headers=headers
                )
            except httpx.TransportError as exc:
                attempt += 1
                await _retrying(f"uploading {local}", attempt, exc)
                head = await api.transfers.head(url, params=params)
                _check(head, 200)
                offset = int(head.headers["Upload-Offset"])
                continue
            _check(response, 204, 409)  # 409: the server says where to go on
            offset, attempt = int(response.headers["Upload-Offset"]), 0
            progress(offset)
    progress(size)


async def download(
    api: Client,
    folder: str,
    remote: str,
    local: Path,
    *,
    archive: bool = False,
    progress: Progress = lambda n: None,
) -> None:
    """Into `local` (through `local`.part, renamed when complete)."""
    grant: dict[str, Any] = await api.request(
        "POST", f"{_folder(folder)}/request-download", body={"path": remote, "archive": archive}
    )
    url, params = grant["url"], {"token": grant["token"]}
    part = local.with_name(local.name + ".part")
    done, attempt, modified = 0, 0, None
    with part.open("wb") as sink:
        while True:
            headers: dict[str, str] = {}
            if modified:  # resume where the dropped connection left off, if unchanged
                headers = {"Range": f"bytes={done}-", "If-Range": modified}
            try:
                async with api.transfers.stream("GET", url, params=params, headers=headers) as r:
                    _check(r, 200, 206)
                    if r.status_code == 200:  # from the start (the file changed, or first try)
                        sink.seek(0)
                        sink.truncate()
                        done = 0
                    total = done + int(r.headers["Content-Length"])
                    modified = r.headers.get("Last-Modified")
                    async for data in r.aiter_bytes(1 << 20):
                        await trio.to_thread.run_sync(sink.write, data)
                        done += len(data)
                        progress(done)
                if done >= total:
                    break
            except httpx.TransportError as exc:
                attempt += 1
                await _retrying(f"downloading {remote}", attempt, exc)
                if modified is None:
                    done = 0
    os.replace(part, local)
