"""Attacks from code inside a session on what surrounds it, against a real Docker engine.

Each test performs the attack and shows it fail: the runner socket cannot be redirected (to
another session's kernel, or to the Docker socket), the disk cannot be filled beyond the
session's limits, and the kernel's files belong to no host account. (That the node would not
follow a replaced socket path even if one could be planted is shown in test_node_parts.)
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pwd
import re
import stat
from pathlib import Path

import docker
import pytest

from node import NodeConfig
from node.testing import FakeControlPlane, NodeProcess, text_of
from tests.node.conftest import NewKernel
from wire import Upload, UploadFile

pytestmark = [pytest.mark.trio, pytest.mark.docker]

MIB = 2**20
DOCKER_SOCKET = "/var/run/docker.sock"

# Tries every way to make the node's next connection reach `target` instead of this kernel.
ATTACK = """
import errno, json, os
tried = {}
def attempt(name, action):
    try:
        action()
        tried[name] = "done"
    except OSError as exc:
        tried[name] = errno.errorcode[exc.errno]
sock = "/run/shipyard/node.sock"
attempt("rename", lambda: os.rename(sock, "/run/shipyard/moved"))
attempt("unlink", lambda: os.unlink(sock))
attempt("symlink over it", lambda: os.symlink(TARGET, sock))
attempt("symlink beside it", lambda: os.symlink(TARGET, "/run/shipyard/runner.sock"))
attempt("chmod", lambda: os.chmod(sock, 0o777))
print(json.dumps(tried))
"""


@pytest.fixture
def node_config(node_config: NodeConfig) -> NodeConfig:
    return dataclasses.replace(node_config, work_size="32m", tmp_size="16m")


def _kdir(node: NodeProcess, kernel_id: str) -> Path:
    return node.config.state_dir / "k" / kernel_id.replace("-", "")[:12]


async def _attack(control_plane: FakeControlPlane, kernel_id: str, target: str) -> dict[str, str]:
    outputs = await control_plane.execute(kernel_id, f"TARGET = {target!r}\n{ATTACK}")
    tried: dict[str, str] = json.loads(text_of(outputs))
    return tried


async def _whoami(control_plane: FakeControlPlane, kernel_id: str) -> str:
    return text_of(await control_plane.execute(kernel_id, "print(me)"))


async def test_a_session_cannot_redirect_its_runner_socket_to_another_session(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    alice, bob = await new_kernel(), await new_kernel()
    await control_plane.execute(alice, "me = 'alice'")
    await control_plane.execute(
        bob, "me = 'bob'\nopen('/home/work/secret.txt', 'w').write('bob only')"
    )
    bob_socket = str(_kdir(node, bob) / "sock" / "node.sock")

    tried = await _attack(control_plane, alice, bob_socket)
    assert set(tried.values()) <= {"EROFS", "EEXIST"}, tried  # nothing the node uses changed

    outputs = await control_plane.execute(
        alice, "import os; print(me, os.path.exists('/home/work/secret.txt'))"
    )
    assert text_of(outputs) == "alice False\n"
    assert await _whoami(control_plane, bob) == "bob\n"


async def test_a_session_cannot_point_its_runner_socket_at_the_docker_socket(
    node: NodeProcess,
    new_kernel: NewKernel,
    control_plane: FakeControlPlane,
) -> None:
    kernel_id = await new_kernel()
    await control_plane.execute(kernel_id, "me = 'the session'")
    tried = await _attack(control_plane, kernel_id, DOCKER_SOCKET)
    assert set(tried.values()) <= {"EROFS", "EEXIST"}, tried

    st = (_kdir(node, kernel_id) / "sock" / "node.sock").lstat()
    assert stat.S_ISSOCK(st.st_mode) and (st.st_uid, st.st_mode & 0o777) == (65536, 0o600)

    assert await _whoami(control_plane, kernel_id) == "the session\n"


async def test_writes_are_limited_to_the_sessions_own_quota_and_scratch(
    node: NodeProcess,
    new_kernel: NewKernel,
    control_plane: FakeControlPlane,
    docker_client: docker.DockerClient,
) -> None:
    kernel_id = await new_kernel()
    code = """
import errno
def fill(path):
    try:
        with open(path, "wb") as out:
            for _ in range(64):
                out.write(bytes(1024 * 1024))
        return "wrote 64 MiB"
    except OSError as exc:
        return errno.errorcode[exc.errno]
for path in ("/home/work/big", "/tmp/big", "/run/shipyard/big", "/opt/shipyard/big",
             "/big", "/etc/big", "/var/tmp/big", "/usr/big"):
    print(path, fill(path))
"""
    outputs = await control_plane.execute(kernel_id, code)
    results = dict(line.split(" ", 1) for line in text_of(outputs).splitlines())
    assert results == {
        "/home/work/big": "ENOSPC",  # 32 MiB quota
        "/tmp/big": "ENOSPC",  # 16 MiB tmpfs
        "/run/shipyard/big": "EROFS",
        "/opt/shipyard/big": "EROFS",
        "/big": "EROFS",
        "/etc/big": "EROFS",
        "/var/tmp/big": "EROFS",
        "/usr/big": "EROFS",
    }

    # a run that fails on a full disk says why, whichever program failed
    outputs = await control_plane.execute(
        kernel_id, mode="batch", options={"exec": "dd if=/dev/zero of=more bs=1M count=8"}
    )
    assert outputs[-1].exit_code != 0
    stderr = text_of(outputs, "stderr")
    assert re.search(r"shipyard: /home/work is full \([\d.]+ KiB free of [\d.]+ MiB\)", stderr)
    assert "No space left on device" in stderr
    outputs = await control_plane.execute(
        kernel_id, "open('/home/work/big', 'ab').write(b'x' * 2**20)"
    )
    assert "OSError: [Errno 28] No space left on device" in text_of(outputs, "stderr")

    # uploads are held to the same quota, and say so
    data = base64.b64encode(bytes(MIB)).decode()
    reply = await control_plane.request(
        lambda req_id: Upload(req_id, kernel_id, [UploadFile("up.bin", data)])
    )
    assert not reply.ok
    assert reply.error == "up.bin: cannot write it (No space left on device)"

    # on the host, the session's data is only in its preallocated image; the engine's copy of
    # the container holds nothing (its root is read-only)
    image = _kdir(node, kernel_id) / "work.img"
    assert image.stat().st_size == 32 * MIB
    assert image.stat().st_blocks * 512 <= 33 * MIB
    [container] = docker_client.api.containers(
        filters={"label": f"ai.shipyard.kernel-id={kernel_id}"}, size=True
    )
    assert container.get("SizeRw", 0) == 0  # the engine omits a zero

    # freeing space makes the session work again
    outputs = await control_plane.execute(
        kernel_id, "import os; os.remove('/home/work/big'); os.remove('/tmp/big')\n"
        "open('/home/work/ok', 'w').write('fine'); print(open('/home/work/ok').read())",
    )  # fmt: skip
    assert text_of(outputs) == "fine\n"


async def test_kernel_files_belong_to_no_host_account_and_the_user_has_a_home(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    outputs = await control_plane.execute(
        kernel_id,
        mode="batch",
        options={"exec": 'id -u; id -g; id -un; echo "$HOME"; touch "$HOME/x" && echo writable'},
    )
    assert text_of(outputs) == "65536\n65536\nwork\n/home/work\nwritable\n"
    outputs = await control_plane.execute(
        kernel_id,
        "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_dir, os.path.expanduser('~'))",
    )
    assert text_of(outputs) == "/home/work /home/work\n"

    work = _kdir(node, kernel_id) / "work"
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in (work, work / "x")}
    assert owners == {(65536, 65536)}
    with pytest.raises(KeyError):
        pwd.getpwuid(65536)  # on the host: nobody
    assert os.stat(work / "x").st_uid == 65536
