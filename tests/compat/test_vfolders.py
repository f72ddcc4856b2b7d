"""The official client's folder flows (issue 13 item 7, docs/backendai-api.md §6.3, §12):
list-hosts, create, list, upload, ls, info, download, run with -m, delete; and a file a session
writes into a mounted folder outlives it, downloads byte-identical and belongs to the container
user in the next session that mounts it."""

from __future__ import annotations

import hashlib
import os
import uuid

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
