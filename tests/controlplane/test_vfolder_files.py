"""Files in folders through the API (issue 13 items 3 and 5): listing, mkdir, rename and move,
delete, tus uploads with resumption, downloads with ranges, archives; and every route refusing
`..`, absolute paths, symbolic links out of the folder and device files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from controlplane.api._backpressure import LIMIT, BoundedBody
from tests.controlplane.conftest import API, Keypair
from tests.controlplane.test_vfolders import folder, folder_dir, slug, user

pytestmark = pytest.mark.anyio


async def upload(
    api: API, name: str, path: str, data: bytes, keypair: Keypair, chunk: int = 1 << 20
) -> str:
    granted = await api.call(
        "POST",
        f"/folders/{name}/request-upload",
        {"path": path, "size": len(data)},
        keypair=keypair,
    )
    assert granted.status == 200, granted.body
    url = f"{urlsplit(granted.body['url']).path}?token={granted.body['token']}"
    offset = 0
    while offset < len(data):
        part = data[offset : offset + chunk]
        response = await patch(api, url, offset, part)
        assert response.status_code == 204, await response.get_data()
        offset = int(response.headers["Upload-Offset"])
    return url


async def patch(api: API, url: str, offset: int, data: bytes) -> Any:
    headers = {
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }
    return await api.app.test_client().patch(url, data=data, headers=headers)


async def download(
    api: API, name: str, path: str, keypair: Keypair, archive: bool = False, **headers: str
) -> Any:
    granted = await api.call(
        "POST",
        f"/folders/{name}/request-download",
        {"path": path, "archive": archive},
        keypair=keypair,
    )
    assert granted.status == 200, granted.body
    url = f"{urlsplit(granted.body['url']).path}?token={granted.body['token']}"
    return await api.app.test_client().get(url, headers=headers)


@pytest.fixture
async def alice(api: API) -> Keypair:
    keypair = await user(api, "alice@example.com")
    await folder(api, "f", keypair)
    return keypair


async def test_upload_list_download_byte_identical(api: API, alice: Keypair) -> None:
    data = os.urandom(3 * 2**20 + 123)
    await upload(api, "f", "sub/dir/blob.bin", data, alice)
    listed = await api.call("GET", "/folders/f/files", {"path": "sub/dir"}, keypair=alice)
    [item] = listed.body["items"]
    assert (item["name"], item["type"], item["size"], item["mode"]) == (
        "blob.bin",
        "FILE",
        len(data),
        "-rw-r--r--",
    )
    [entry] = json.loads(listed.body["files"])
    assert (entry["filename"], entry["size"]) == ("blob.bin", len(data))
    assert isinstance(entry["mtime"], float)
    root = folder_dir(api, (await api.call("GET", "/folders/f", keypair=alice)).body["id"])
    on_disk = root / "sub" / "dir" / "blob.bin"
    assert on_disk.stat().st_uid == api.core.config.vfolder_uid  # what sessions run as
    assert (root / "sub").stat().st_uid == api.core.config.vfolder_uid
    got = await download(api, "f", "sub/dir/blob.bin", alice)
    assert got.status_code == 200
    assert int(got.headers["Content-Length"]) == len(data)
    assert hashlib.sha256(await got.get_data()).digest() == hashlib.sha256(data).digest()


async def test_download_ranges(api: API, alice: Keypair) -> None:
    data = bytes(range(256)) * 100
    await upload(api, "f", "r.bin", data, alice)
    first = await download(api, "f", "r.bin", alice)
    modified = first.headers["Last-Modified"]
    rest = await download(api, "f", "r.bin", alice, Range="bytes=1000-", **{"If-Range": modified})
    assert rest.status_code == 206
    assert rest.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert await rest.get_data() == data[1000:]
    middle = await download(api, "f", "r.bin", alice, Range="bytes=10-19")
    assert (middle.status_code, await middle.get_data()) == (206, data[10:20])
    stale = await download(api, "f", "r.bin", alice, Range="bytes=5-", **{"If-Range": "old"})
    assert (stale.status_code, len(await stale.get_data())) == (200, len(data))
    beyond = await download(api, "f", "r.bin", alice, Range=f"bytes={len(data)}-")
    assert beyond.status_code == 416


async def test_tus_upload_resumes_from_the_offset(api: API, alice: Keypair) -> None:
    data = os.urandom(2 * 2**20)
    granted = await api.call(
        "POST", "/folders/f/request-upload", {"path": "big", "size": len(data)}, keypair=alice
    )
    url = f"{urlsplit(granted.body['url']).path}?token={granted.body['token']}"
    first = await patch(api, url, 0, data[:700_000])
    assert (first.status_code, first.headers["Upload-Offset"]) == (204, "700000")
    # the connection dropped: the client asks where to go on
    head = await api.app.test_client().head(url)
    assert head.headers["Upload-Offset"] == "700000"
    assert head.headers["Upload-Length"] == str(len(data))
    wrong = await patch(api, url, 0, data[:10])
    assert (wrong.status_code, wrong.headers["Upload-Offset"]) == (409, "700000")
    listed = await api.call("GET", "/folders/f/files", {"path": "."}, keypair=alice)
    assert listed.body["items"] == []  # half a file is never in the folder
    rest = await patch(api, url, 700_000, data[700_000:])
    assert (rest.status_code, rest.headers["Upload-Offset"]) == (204, str(len(data)))
    got = await download(api, "f", "big", alice)
    assert await got.get_data() == data
    too_much = await patch(api, url, 0, data + b"x")  # more than request-upload said
    assert too_much.status_code == 400


async def test_transfer_tokens_are_sealed(api: API, alice: Keypair) -> None:
    for url in ("/folders/_/tus/upload?token=forged", "/folders/_/download?token=v1:AAAA"):
        client = api.app.test_client()
        got = await (
            client.patch(url, data=b"x", headers={"Upload-Offset": "0"})
            if "upload" in url
            else client.get(url)
        )
        assert got.status_code == 401
    # a download token does not upload
    await upload(api, "f", "x", b"x", alice)
    granted = await api.call("POST", "/folders/f/request-download", {"path": "x"}, keypair=alice)
    url = f"/folders/_/tus/upload?token={granted.body['token']}"
    assert (await patch(api, url, 0, b"y")).status_code == 401


async def test_empty_file_is_made_at_request(api: API, alice: Keypair) -> None:
    granted = await api.call(
        "POST", "/folders/f/request-upload", {"path": "e/empty", "size": 0}, keypair=alice
    )
    assert granted.status == 200
    listed = await api.call("GET", "/folders/f/files", {"path": "e"}, keypair=alice)
    assert [(i["name"], i["size"]) for i in listed.body["items"]] == [("empty", 0)]


async def test_quota_refuses_uploads_past_it(api: API, alice: Keypair) -> None:
    await folder(api, "small", alice, quota="1m")
    await upload(api, "small", "a", b"a" * 700_000, alice)
    refused = await api.call(
        "POST", "/folders/small/request-upload", {"path": "b", "size": 400_000}, keypair=alice
    )
    assert (refused.status, slug(refused.body)) == (413, "vfolder-quota-exceeded")
    # two uploads granted together: the second to finish is refused, and leaves nothing
    grants = [
        (
            await api.call(
                "POST", "/folders/small/request-upload", {"path": p, "size": 200_000}, keypair=alice
            )
        ).body
        for p in ("c", "d")
    ]
    for index, grant in enumerate(grants):
        url = f"{urlsplit(grant['url']).path}?token={grant['token']}"
        done = await patch(api, url, 0, b"z" * 200_000)
        assert done.status_code == (204 if index == 0 else 413)
    listed = await api.call("GET", "/folders/small/files", {"path": "."}, keypair=alice)
    assert sorted(i["name"] for i in listed.body["items"]) == ["a", "c"]


async def test_mkdir_rename_move_delete(api: API, alice: Keypair) -> None:
    made = await api.call(
        "POST", "/folders/f/mkdir", {"path": "a/b", "parents": True}, keypair=alice
    )
    assert made.status == 201
    again = await api.call("POST", "/folders/f/mkdir", {"path": "a/b"}, keypair=alice)
    assert again.status == 400
    ok = await api.call(
        "POST", "/folders/f/mkdir", {"path": "a/b", "exist_ok": True}, keypair=alice
    )
    assert ok.status == 201
    await upload(api, "f", "a/b/x.txt", b"x", alice)
    renamed = await api.call(
        "POST",
        "/folders/f/rename-file",
        {"target_path": "a/b/x.txt", "new_name": "y.txt"},
        keypair=alice,
    )
    assert renamed.status == 200
    moved = await api.call(
        "POST", "/folders/f/move-file", {"src": "a/b/y.txt", "dst": "a/z.txt"}, keypair=alice
    )
    assert moved.status == 200
    listed = await api.call("GET", "/folders/f/files", {"path": "a"}, keypair=alice)
    assert sorted((i["name"], i["type"]) for i in listed.body["items"]) == [
        ("b", "DIRECTORY"),
        ("z.txt", "FILE"),
    ]
    not_empty = await api.call("DELETE", "/folders/f/delete-files", {"files": ["a"]}, keypair=alice)
    assert not_empty.status == 400
    deleted = await api.call(
        "DELETE", "/folders/f/delete-files", {"files": ["a"], "recursive": True}, keypair=alice
    )
    assert deleted.status == 200
    assert (await api.call("GET", "/folders/f/files", {"path": "."}, keypair=alice)).body[
        "items"
    ] == []


async def test_archive_of_a_folder(api: API, alice: Keypair) -> None:
    await upload(api, "f", "proj/a.txt", b"alpha", alice)
    await upload(api, "f", "proj/deep/b.bin", os.urandom(5000), alice)
    got = await download(api, "f", "proj", alice, archive=True)
    body = await got.get_data()
    assert int(got.headers["Content-Length"]) == len(body)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = sorted(tar.getnames())
        assert names == ["proj/a.txt", "proj/deep", "proj/deep/b.bin"]
        member = tar.extractfile("proj/a.txt")
        assert member is not None and member.read() == b"alpha"


@pytest.fixture
async def hostile(api: API, alice: Keypair, tmp_path: Path) -> Path:
    """Folder `f` with escapes a session could plant: links out, a device, a FIFO."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = folder_dir(api, (await api.call("GET", "/folders/f", keypair=alice)).body["id"])
    (root / "ok.txt").write_text("ok")
    (root / "d").mkdir()
    os.symlink(outside, root / "out")
    os.symlink(outside / "secret.txt", root / "pw")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(root / "pipe")
    return outside


ESCAPES = ["../x", "../../etc/passwd", "/etc/passwd", "d/../../x", "out/secret.txt", "out/new"]
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "files", lambda p: {"path": p}),
    ("POST", "mkdir", lambda p: {"path": p, "parents": True}),
    ("POST", "rename-file", lambda p: {"target_path": p, "new_name": "renamed"}),
    ("POST", "move-file", lambda p: {"src": p, "dst": "moved"}),
    ("POST", "move-file", lambda p: {"src": "ok.txt", "dst": p}),
    ("DELETE", "delete-files", lambda p: {"files": [p], "recursive": True}),
    ("POST", "request-upload", lambda p: {"path": p, "size": 0}),
    ("POST", "request-upload", lambda p: {"path": p, "size": 5}),
    ("POST", "request-download", lambda p: {"path": p}),
    ("POST", "request-download", lambda p: {"path": p, "archive": True}),
]


@pytest.mark.parametrize(("method", "route", "make"), ROUTES)
async def test_every_route_refuses_escapes(
    api: API, alice: Keypair, hostile: Path, method: str, route: str, make: Any
) -> None:
    cases = [*ESCAPES]
    if route in ("files", "request-download", "mkdir") or "upload" in route:
        cases += ["out", "pw", "null", "pipe"]  # links and devices are not read or written
    if route == "request-download":
        cases += ["d"] if "archive" not in str(make("x")) else ["ok.txt"]
    for path in cases:
        got = await api.call(method, f"/folders/f/{route}", make(path), keypair=alice)
        assert got.status in (400, 404), (route, path, got.status, got.body)
        assert got.status != 404 or ("../" not in path and not path.startswith("/")), (route, path)
    assert sorted(os.listdir(hostile)) == ["secret.txt"]
    assert (hostile / "secret.txt").read_text() == "secret"


async def test_upload_refused_when_a_link_appears_before_it_completes(
    api: API, alice: Keypair, hostile: Path
) -> None:
    root = folder_dir(api, (await api.call("GET", "/folders/f", keypair=alice)).body["id"])
    granted = await api.call(
        "POST", "/folders/f/request-upload", {"path": "later/x", "size": 3}, keypair=alice
    )
    os.symlink(hostile, root / "later")  # a session swaps in a link meanwhile
    url = f"{urlsplit(granted.body['url']).path}?token={granted.body['token']}"
    refused = await patch(api, url, 0, b"abc")
    assert refused.status_code == 400
    assert sorted(os.listdir(hostile)) == ["secret.txt"]


async def test_download_refused_when_the_file_became_a_link(
    api: API, alice: Keypair, hostile: Path
) -> None:
    root = folder_dir(api, (await api.call("GET", "/folders/f", keypair=alice)).body["id"])
    granted = await api.call(
        "POST", "/folders/f/request-download", {"path": "ok.txt"}, keypair=alice
    )
    (root / "ok.txt").unlink()
    os.symlink(hostile / "secret.txt", root / "ok.txt")
    url = f"{urlsplit(granted.body['url']).path}?token={granted.body['token']}"
    got = await api.app.test_client().get(url)
    assert got.status_code == 400
    assert b"secret" not in await got.get_data()


async def test_a_streamed_body_waits_for_its_reader_an_awaited_one_does_not() -> None:
    """Back-pressure for uploads: the connection takes no more of a streamed body while 256 KiB
    are unread (Hypercorn then stops reading the socket); a body awaited whole is not held."""
    streamed = BoundedBody(None, None)
    streamed.append(bytes(LIMIT))
    with anyio.move_on_after(0.05) as waited:
        await streamed.room()
    assert waited.cancelled_caught  # full: the next message waits
    assert len(await anext(aiter(streamed))) == LIMIT
    with anyio.fail_after(5):
        await streamed.room()  # read: room again
    whole = BoundedBody(None, None)
    whole.append(bytes(LIMIT))
    got = []

    async def read_all() -> None:
        got.append(await whole)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read_all)
        with anyio.fail_after(5):
            await whole.room()  # returns once the reader asked for the whole body
        whole.append(bytes(LIMIT))
        whole.set_complete()
    assert len(got[0]) == 2 * LIMIT
