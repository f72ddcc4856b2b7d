"""The official client's folder flows (issue 13 item 7, docs/backendai-api.md §6.3, §12):
list-hosts, create, list, upload, ls, info, download, run with -m, delete; and a file a session
writes into a mounted folder outlives it, downloads byte-identical and belongs to the container
user in the next session that mounts it."""

from __future__ import annotations

import hashlib
import os
import socket
import tarfile
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]


def test_backendai_folder_flows(bai: BackendAI) -> None:
    name = f"data-{uuid.uuid4().hex[:8]}"
    hosts = bai("vfolder", "list-hosts")
    assert hosts.returncode == 0, hosts.stderr
    assert "Default vfolder host: local:volume1" in hosts.stdout
    assert "Usable hosts: local:volume1" in hosts.stdout

    created = bai("vfolder", "create", name, "local:volume1")
    assert created.returncode == 0, created.stderr
    assert f'Virtual folder "{name}" is created.' in created.stdout
    listed = bai.json("vfolder", "list")
    [item] = [i for i in listed["items"] if i["name"] == name]
    assert (item["host"], item["permission"], item["ownership_type"]) == (
        "local:volume1",
        "rw",
        "user",
    )

    payload = os.urandom(3 * 2**20 + 17)
    (bai.workdir / "in.bin").write_bytes(payload)
    (bai.workdir / "empty").write_bytes(b"")
    uploaded = bai("vfolder", "upload", name, "in.bin", "empty")
    assert uploaded.returncode == 0, uploaded.stderr
    assert "Done." in uploaded.stdout + uploaded.stderr
    ls = bai("vfolder", "ls", name)
    assert ls.returncode == 0, ls.stderr
    assert "in.bin" in ls.stdout and "empty" in ls.stdout
    info = bai("vfolder", "info", name)
    assert info.returncode == 0, info.stderr
    assert name in info.stdout

    # a session writes next to the upload; it outlives the session
    digest = hashlib.sha256(payload).hexdigest()
    code = (
        "import hashlib, os\n"
        f"print(hashlib.sha256(open('{name}/in.bin', 'rb').read()).hexdigest() == '{digest}')\n"
        f"open('{name}/out.bin', 'wb').write(bytes(range(256)) * 4096)\n"
        "print('written')\n"
    )
    ran = bai("run", "--rm", *SMALL, "-m", name, "python", "-c", code)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "True\nwritten\n", ran.stderr

    downloaded = bai("vfolder", "download", name, "out.bin")
    assert downloaded.returncode == 0, downloaded.stderr
    assert (bai.workdir / "out.bin").read_bytes() == bytes(range(256)) * 4096

    check = (
        "import os\n"
        "s = os.stat('/home/work/w/out.bin')\n"
        "print(s.st_uid == os.getuid() == 65536, s.st_gid == os.getgid())\n"
    )
    again = bai("run", "--rm", *SMALL, "-m", f"{name}=w", "python", "-c", check)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "True True\n", again.stderr

    deleted = bai("vfolder", "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    assert "Deleted." in deleted.stdout + deleted.stderr
    assert name not in [i["name"] for i in bai.json("vfolder", "list")["items"]]


def test_backendai_mount_of_a_missing_folder_is_refused(bai: BackendAI) -> None:
    refused = bai("run", "--rm", *SMALL, "-t", "nosuch-mount", "-m", "nosuch", "python", "-c", "1")
    # the client prints the error and exits 0 (its `run` does so for every failed create)
    assert "VFolder nosuch is not found or accessible." in refused.stderr
    assert "nosuch-mount" not in bai.api("GET", "/session").text


def test_shipyard_vfolder_cli_and_read_only_mount(bai: BackendAI) -> None:
    cli, cwd = bai.appliance.cli, str(bai.workdir)
    name = f"sy-{uuid.uuid4().hex[:8]}"
    created = cli("vfolder", "create", name, cwd=cwd)
    assert created.returncode == 0, created.stderr
    payload = os.urandom(9 * 2**20 + 5)  # more than two 4 MiB tus chunks
    (bai.workdir / "big.bin").write_bytes(payload)
    uploaded = cli("vfolder", "upload", name, "big.bin", "-d", "in", cwd=cwd)
    assert uploaded.returncode == 0, uploaded.stderr
    # not a terminal: no progress bar drawn, one line per file
    assert uploaded.stdout == f"big.bin -> {name}/in/big.bin: done\n"
    assert "\r" not in uploaded.stderr + uploaded.stdout
    assert cli("vfolder", "mkdir", name, "out/deep", "-p", cwd=cwd).returncode == 0
    moved = cli("vfolder", "mv", name, "in/big.bin", "out/deep/big.bin", cwd=cwd)
    assert moved.returncode == 0, moved.stderr
    files = cli("vfolder", "ls-files", name, "out/deep", cwd=cwd)
    assert "big.bin" in files.stdout and str(len(payload)) in files.stdout

    code = (
        "import hashlib\n"
        f"print(hashlib.sha256(open('/home/work/{name}/out/deep/big.bin', 'rb').read())"
        f".hexdigest() == '{hashlib.sha256(payload).hexdigest()}')\n"
        "try:\n"
        f"    open('/home/work/{name}/x', 'w')\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    ran = cli("run", *SMALL, "--mount", f"{name}:ro", "-c", code, cwd=cwd)
    assert (ran.returncode, ran.stdout) == (0, "True\n30\n"), ran.stderr  # EROFS

    (bai.workdir / "dl").mkdir()
    got = cli("vfolder", "download", name, "out/deep/big.bin", "--dest", "dl", cwd=cwd)
    assert got.returncode == 0, got.stderr
    assert (bai.workdir / "dl" / "big.bin").read_bytes() == payload
    archived = cli("vfolder", "download", name, "out", "--archive", "--dest", "dl", cwd=cwd)
    assert archived.returncode == 0, archived.stderr
    with tarfile.open(bai.workdir / "dl" / "out.tar") as tar:
        assert "out/deep/big.bin" in tar.getnames()
    assert cli("vfolder", "rm", name, cwd=cwd).returncode == 0
    assert name not in cli("vfolder", "ls", cwd=cwd).stdout


def test_upload_cut_mid_body_resumes_byte_identical(bai: BackendAI) -> None:
    """A real connection dropped in the middle of a PATCH body: what arrived is kept, HEAD says
    how much, and the rest completes the file."""
    name = f"cut-{uuid.uuid4().hex[:8]}"
    assert bai.api("POST", "/folders", {"name": name}).status_code == 201
    payload = os.urandom(24 * 2**20)
    grant = bai.api("POST", f"/folders/{name}/request-upload", {"path": "f", "size": len(payload)})
    url, token = grant.json()["url"], grant.json()["token"]
    parts = urlsplit(url)
    cut = 10 * 2**20 + 12345
    head = (
        f"PATCH {parts.path}?token={token} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head.encode() + payload[:cut])
    # HEAD answers once the cut-off PATCH stopped writing: what arrived and was written
    offset = int(httpx.head(url, params={"token": token}, timeout=30).headers["Upload-Offset"])
    assert 0 < offset <= cut
    rest = httpx.patch(
        url,
        params={"token": token},
        content=payload[offset:],
        headers={"Upload-Offset": str(offset), "Tus-Resumable": "1.0.0"},
        timeout=60,
    )
    assert (rest.status_code, rest.headers["Upload-Offset"]) == (204, str(len(payload)))
    grant = bai.api("POST", f"/folders/{name}/request-download", {"path": "f"}).json()
    got = httpx.get(grant["url"], params={"token": grant["token"]}, timeout=60)
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(payload).digest()
    assert bai.api("DELETE", f"/folders/{name}").status_code == 204
