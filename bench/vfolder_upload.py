"""A large upload into a virtual folder, cut mid-way and resumed (issue 13, "Done when").

    .venv/bin/python -m bench.vfolder_upload [--gib 2]

Starts its own appliance, writes a file of random bytes, and uploads it with tus PATCHes of
`--chunk-mib` (default 4 MiB, what `shipyard vfolder upload` sends). Half-way, one PATCH goes
over a raw socket that is closed in the middle of its body; the upload then asks HEAD for the
offset and sends the rest.
The file is then downloaded through the API and compared by SHA-256. The control plane's RSS is
sampled every 50 ms throughout; the figure is its peak growth over the RSS before the upload.
`--chunk-mib` sets the PATCH size (the control plane holds at most about 256 KiB of a body:
controlplane/api/_backpressure.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from bench.unpolled_output import _controlplane_pid, _rss_mib
from client.config import ClientConfig
from client.sdk import Client
from shipyard.testing import running_appliance

BLOCK = 4 << 20  # of the source file written


def _make_source(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(BLOCK)
    with path.open("wb") as out:
        for start in range(0, size, BLOCK):
            # a fresh block per chunk: no two chunks alike, cheaply
            data = hashlib.sha256(start.to_bytes(8, "big")).digest() + block[32:]
            data = data[: min(BLOCK, size - start)]
            out.write(data)
            digest.update(data)
    return digest.hexdigest()


async def _cut_patch(url: str, token: str, offset: int, data: bytes) -> None:
    """Send a PATCH whose body stops half-way, then drop the connection."""
    parts = urlsplit(url)
    head = (
        f"PATCH {parts.path}?token={token} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    assert parts.hostname is not None and parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    await stream.send_all(head.encode() + data[: len(data) // 2])
    await stream.aclose()


async def _upload(
    api: Client, source: Path, size: int, chunk: int, on_progress: Any
) -> tuple[int, int]:
    cut_at = size // 2
    grant = await api.request(
        "POST", "/folders/bench/request-upload", body={"path": "big.bin", "size": size}
    )
    url, token = grant["url"], grant["token"]
    params = {"token": token}
    offset, cut_offset, resumed_from = 0, -1, -1
    async with httpx.AsyncClient(timeout=120) as http:
        with source.open("rb") as f:
            while offset < size:
                f.seek(offset)
                data = f.read(chunk)
                if cut_offset < 0 and offset >= cut_at:
                    cut_offset = offset
                    await _cut_patch(url, token, offset, data)
                    head = await http.head(url, params=params)
                    offset = resumed_from = int(head.headers["Upload-Offset"])
                    continue
                headers = {"Upload-Offset": str(offset), "Tus-Resumable": "1.0.0"}
                response = await http.patch(url, params=params, content=data, headers=headers)
                assert response.status_code == 204, response.text
                offset = int(response.headers["Upload-Offset"])
                on_progress(offset)
    return cut_offset, resumed_from


async def _download_digest(api: Client) -> str:
    grant = await api.request("POST", "/folders/bench/request-download", body={"path": "big.bin"})
    digest = hashlib.sha256()
    async with (
        httpx.AsyncClient(timeout=120) as http,
        http.stream("GET", grant["url"], params={"token": grant["token"]}) as response,
    ):
        async for data in response.aiter_bytes(1 << 20):
            digest.update(data)
    return digest.hexdigest()


async def _main(gib: float, chunk: int) -> None:
    size = int(gib * 2**30)
    with running_appliance() as appliance, tempfile.TemporaryDirectory() as scratch:
        pid = _controlplane_pid(appliance)
        source = Path(scratch) / "source.bin"
        expected = _make_source(source, size)
        env = appliance.env()
        config = ClientConfig(
            env["BACKEND_ENDPOINT"], env["BACKEND_ACCESS_KEY"], env["BACKEND_SECRET_KEY"]
        )
        async with Client(config) as api:
            await api.request("POST", "/folders", body={"name": "bench"})
            before = _rss_mib(pid)
            peak = before
            done = 0

            def progress(offset: int) -> None:
                nonlocal done
                done = offset

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, _rss_mib(pid))
                    await trio.sleep(0.05)

            started = time.monotonic()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                cut, resumed = await _upload(api, source, size, chunk, progress)
                elapsed = time.monotonic() - started
                upload_peak = peak
                got = await _download_digest(api)
                nursery.cancel_scope.cancel()
            after = _rss_mib(pid)
    print(f"upload of {size / 2**30:.2f} GiB in {chunk >> 20} MiB PATCHes, {elapsed:.1f} s")
    print(f"cut mid-body of the PATCH at offset {cut}; HEAD said resume at {resumed}")
    print(f"downloaded SHA-256 {'matches' if got == expected else 'DIFFERS'}: {got}")
    print(
        f"control plane RSS: {before:.1f} MiB before; peak while uploading {upload_peak:.1f} MiB"
        f" (+{upload_peak - before:.1f} MiB), with the download {peak:.1f} MiB"
        f" (+{peak - before:.1f} MiB); {after:.1f} MiB after"
    )
    if got != expected:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="upload size in GiB")
    parser.add_argument("--chunk-mib", type=int, default=4, help="bytes per PATCH, in MiB")
    args = parser.parse_args()
    trio.run(_main, args.gib, args.chunk_mib << 20)


if __name__ == "__main__":
    main()
