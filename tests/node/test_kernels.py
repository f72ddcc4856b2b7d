"""Kernels on a real Docker engine, driven through the fake control plane."""

from __future__ import annotations

import base64
import functools
import uuid
from pathlib import Path

import docker
import pytest
import trio

from node.testing import FakeControlPlane, NodeProcess, text_of
from tests.node.conftest import OWNER, NewKernel
from wire import (
    CreateKernel,
    DestroyKernel,
    GetLogs,
    Heartbeat,
    KernelDestroyed,
    KernelExited,
    Upload,
    UploadFile,
    read_result,
)

pytestmark = [pytest.mark.trio, pytest.mark.docker]


def _kernel_dir(node: NodeProcess, kernel_id: str) -> Path:
    return node.config.state_dir / "k" / kernel_id.replace("-", "")[:12]


async def test_created_container_is_confined_and_labelled(
    node: NodeProcess,
    new_kernel: NewKernel,
    control_plane: FakeControlPlane,
    docker_client: docker.DockerClient,
) -> None:
    kernel_id = await new_kernel(mem="256m", cpu="0.5", environ={"GREETING": "hi"})
    [container] = docker_client.containers.list(
        filters={"label": f"ai.shipyard.kernel-id={kernel_id}"}
    )
    attrs = container.attrs
    host, config = attrs["HostConfig"], attrs["Config"]
    assert attrs["State"]["Running"]
    labels = {
        "ai.shipyard.kernel-id": kernel_id,
        "ai.shipyard.session-id": config["Labels"]["ai.shipyard.session-id"],
        "ai.shipyard.owner": OWNER,
        "ai.shipyard.node-id": node.config.node_id,
        "ai.shipyard.kernel": "1",  # inherited from the image, like any other image label
    }
    assert labels.items() <= config["Labels"].items()
    assert config["User"] == "65536:65536"
    assert config["WorkingDir"] == "/home/work"
    assert "GREETING=hi" in config["Env"] and "HOME=/home/work" in config["Env"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Init"] is True
    assert host["NetworkMode"] == "none"
    assert host["Memory"] == host["MemorySwap"] == 256 * 2**20
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 1024
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": f"size={256 * 2**20},mode=1777,exec,nosuid,nodev"}
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "8m", "max-file": "2"}}
    mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in attrs["Mounts"]}
    kdir = _kernel_dir(node, kernel_id)
    assert mounts == {
        "/opt/shipyard": (str(node.config.state_dir / "runner"), False),
        "/run/shipyard": (str(kdir / "sock"), False),
        "/home/work": (str(kdir / "work"), True),
        "/etc/passwd": (str(kdir / "passwd"), False),
        "/etc/group": (str(kdir / "group"), False),
    }
    outputs = await control_plane.execute(kernel_id, "import os; print(os.getuid(), os.getcwd())")
    assert text_of(outputs) == "65536 /home/work\n"


async def test_query_output_and_state_between_runs(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    outputs = await control_plane.execute(kernel_id, "print(6*7)")
    assert text_of(outputs) == "42\n"
    assert [(o.kind, o.exit_code) for o in outputs][-1] == ("finished", 0)

    await control_plane.execute(kernel_id, "counter = 41")
    outputs = await control_plane.execute(kernel_id, "counter += 1\nprint(counter)")
    assert text_of(outputs) == "42\n"

    outputs = await control_plane.execute(kernel_id, "1/0")
    assert "ZeroDivisionError" in text_of(outputs, "stderr")
    assert outputs[-1].exit_code == 1


async def test_output_keeps_its_order_and_floods_are_batched(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    outputs = await control_plane.execute(
        kernel_id, "import sys\nfor i in range(3):\n    print(i)\n    print(-i, file=sys.stderr)"
    )
    merged: list[tuple[str, str]] = []
    for o in outputs:
        if o.kind in ("stdout", "stderr"):
            if merged and merged[-1][0] == o.kind:
                merged[-1] = (o.kind, merged[-1][1] + o.data)
            else:
                merged.append((o.kind, o.data))
    expected = [(kind, f"{n}\n") for i in range(3) for kind, n in (("stdout", i), ("stderr", -i))]
    assert merged == expected

    outputs = await control_plane.execute(kernel_id, "for i in range(10000): print(i)")
    assert text_of(outputs) == "".join(f"{i}\n" for i in range(10000))
    assert len(outputs) < 10000  # 20000 writes, batched into far fewer frames


async def test_input_round_trip(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    outputs = await control_plane.execute(
        kernel_id,
        "import getpass\nname = input('name? ')\nsecret = getpass.getpass()\n"
        "print(f'hello {name}, {len(secret)}')",
        inputs=["Ada", "hunter2"],
    )
    waits = [(o.data, o.password) for o in outputs if o.kind == "waiting-input"]
    assert waits == [("name? ", False), ("Password: ", True)]
    assert text_of(outputs) == "hello Ada, 7\n"
    assert outputs[-1].exit_code == 0


async def test_batch_exit_codes(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    outputs = await control_plane.execute(
        kernel_id,
        mode="batch",
        options={"clean": "*", "build": "echo built", "exec": "echo ran; echo oops >&2; exit 3"},
    )
    kinds = [(o.kind, o.exit_code) for o in outputs if o.kind.endswith("finished")]
    assert kinds == [("build-finished", 0), ("finished", 3)]
    assert text_of(outputs) == "built\nran\n"
    assert text_of(outputs, "stderr") == "oops\n"


async def test_upload_then_read_in_batch(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    data = base64.b64encode(b"hello from upload\n").decode()
    reply = await control_plane.request(
        lambda req_id: Upload(req_id, kernel_id, [UploadFile("sub/dir/hello.txt", data)])
    )
    assert reply.ok, reply.error
    assert reply.result == {"written": ["sub/dir/hello.txt"]}
    outputs = await control_plane.execute(
        kernel_id, mode="batch", options={"exec": "cat sub/dir/hello.txt; stat -c %u sub/dir"}
    )
    assert text_of(outputs) == "hello from upload\n65536\n"
    assert outputs[-1].exit_code == 0


@pytest.mark.parametrize("bad_path", ["../x", "/etc/x", "a/../../x", ""])
async def test_upload_outside_work_dir_is_refused(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane, bad_path: str
) -> None:
    kernel_id = await new_kernel()
    data = base64.b64encode(b"x").decode()
    files = [UploadFile("fine.txt", data), UploadFile(bad_path, data)]
    reply = await control_plane.request(lambda req_id: Upload(req_id, kernel_id, files))
    assert not reply.ok
    assert repr(bad_path) in reply.error
    assert not (_kernel_dir(node, kernel_id) / "work" / "fine.txt").exists()  # nothing written


async def test_upload_does_not_follow_symlinks_planted_by_the_kernel(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    outside = node.config.state_dir / "outside"
    outside.mkdir()
    await control_plane.execute(
        kernel_id, f"import os; os.symlink({str(outside)!r}, 'link'); os.symlink('/x', 'f')"
    )
    data = base64.b64encode(b"x").decode()
    for path in ("link/pwned", "f"):
        upload = functools.partial(Upload, kernel_id=kernel_id, files=[UploadFile(path, data)])
        reply = await control_plane.request(upload)
        assert not reply.ok
    assert list(outside.iterdir()) == []


async def test_logs_show_what_the_session_printed(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    await control_plane.execute(kernel_id, "print('to the log')")
    reply = await control_plane.request(lambda req_id: GetLogs(req_id, kernel_id))
    assert reply.ok, reply.error
    assert "to the log\n" in reply.result["logs"]


async def test_out_of_memory_is_explained(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel(mem="128m")
    outputs = await control_plane.execute(kernel_id, "b = bytearray(1024**3)")
    assert "out of memory (memory limit 128 MiB)" in text_of(outputs, "stderr")
    assert [o.kind for o in outputs].count("finished") == 1
    assert outputs[-1].exit_code == 137
    exited = await control_plane.wait_for(KernelExited, lambda k: k.kernel_id == kernel_id)
    assert exited.oom_killed
    assert exited.reason == "killed: out of memory (limit 128 MiB)"


async def test_kernel_exiting_on_its_own_is_reported(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    kernel_id = await new_kernel()
    outputs = await control_plane.execute(kernel_id, "import os; os._exit(3)")
    assert "exited unexpectedly (exit code 3)" in text_of(outputs, "stderr")
    assert outputs[-1].exit_code == 3
    exited = await control_plane.wait_for(KernelExited, lambda k: k.kernel_id == kernel_id)
    assert (exited.exit_code, exited.oom_killed, exited.reason) == (3, False, "exited with code 3")
    # a run sent afterwards waits for no runner: it is told the kernel is gone
    outputs = await control_plane.execute(kernel_id, "print(1)")
    assert "exited unexpectedly (exit code 3)" in text_of(outputs, "stderr")
    assert outputs[-1].exit_code == 3


async def test_a_kernel_whose_interpreter_cannot_start_fails_at_once_saying_why(
    node: NodeProcess, control_plane: FakeControlPlane, kernel_image: str
) -> None:
    kernel_id = str(uuid.uuid4())
    started = trio.current_time()
    reply = await control_plane.request(
        lambda req_id: CreateKernel(
            req_id, kernel_id, "s", OWNER, kernel_image, {"cpu": "0.05", "mem": "64m"},
            environ={"PYTHONHOME": "/nonexistent"},
        )
    )  # fmt: skip
    assert not reply.ok and reply.error is not None
    assert reply.error.startswith(
        f"kernel {kernel_id} stopped while starting (exited with code 1); its last output:\n"
    )
    assert "Fatal Python error: init_fs_encoding" in reply.error
    # the engine's event ended the wait, not the runner's time (30 s)
    assert trio.current_time() - started < 20
    assert not _kernel_dir(node, kernel_id).exists()


async def test_destroy_removes_container_and_folder(
    node: NodeProcess,
    new_kernel: NewKernel,
    control_plane: FakeControlPlane,
    docker_client: docker.DockerClient,
) -> None:
    kernel_id = await new_kernel()
    reply = await control_plane.request(lambda req_id: DestroyKernel(req_id, kernel_id))
    assert reply.ok, reply.error
    destroyed = read_result(reply, KernelDestroyed)
    assert destroyed.exit_code is None  # it was running: killed by the destroy
    assert destroyed.logs is not None and "runner: " in destroyed.logs  # in the same trip
    label = f"ai.shipyard.kernel-id={kernel_id}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert not _kernel_dir(node, kernel_id).exists()
    # gone is fine, and destroying it did not count as dying on its own
    again = await control_plane.request(lambda req_id: DestroyKernel(req_id, kernel_id))
    assert again.ok and read_result(again, KernelDestroyed) == KernelDestroyed(None, None)
    assert control_plane.of_type(KernelExited) == []


async def test_kernels_created_at_once_each_get_their_own_work_filesystem(
    node: NodeProcess, new_kernel: NewKernel, control_plane: FakeControlPlane
) -> None:
    # the node makes kernel folders (mkfs and mount) concurrently for bursts of sessions
    ids: list[str] = []

    async def create() -> None:
        ids.append(await new_kernel(mem="64m"))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(create)
    code = (
        "import os\n"
        "open('mine', 'w').write('x')\n"
        "fs = os.statvfs('.')\n"
        "print(os.path.ismount('.'), sorted(os.listdir('.')), fs.f_blocks * fs.f_frsize <= 2**30)"
    )
    for kernel_id in ids:
        outputs = await control_plane.execute(kernel_id, code)
        assert text_of(outputs) == "True ['lost+found', 'mine'] True\n", kernel_id
    # their init processes are looked up after the start, for the statistics of each heartbeat
    beat = await control_plane.wait_for(
        Heartbeat, lambda beat: {k.kernel_id for k in beat.kernels} == set(ids)
    )
    assert all(k.mem_used > 0 and k.mem_limit == 64 * 2**20 for k in beat.kernels), beat
    for kernel_id in ids:
        destroy = functools.partial(DestroyKernel, kernel_id=kernel_id)
        reply = await control_plane.request(destroy)
        assert reply.ok, reply.error
    mounts = await trio.Path("/proc/self/mountinfo").read_text()
    assert str(node.config.state_dir) not in mounts


async def test_unknown_kernel_and_missing_image(
    node: NodeProcess, control_plane: FakeControlPlane
) -> None:
    outputs = await control_plane.execute(str(uuid.uuid4()), "print(1)")
    assert "no such kernel" in text_of(outputs, "stderr")
    assert [(o.kind, o.exit_code) for o in outputs][-1] == ("finished", 1)

    kernel_id = str(uuid.uuid4())
    reply = await control_plane.request(
        lambda req_id: CreateKernel(
            req_id, kernel_id, "s", OWNER, "shipyard/nope:1", {"cpu": "1", "mem": "128m"}
        )
    )
    assert not reply.ok
    assert reply.error == f"image shipyard/nope:1 not found on node {node.config.node_id}"
    assert not (node.config.state_dir / "k" / kernel_id.replace("-", "")[:12]).exists()


async def test_limits_below_what_the_engine_enforces_are_refused(
    node: NodeProcess, control_plane: FakeControlPlane, kernel_image: str
) -> None:
    """Issue 8 item 3: cpu 1e-9 used to become NanoCpus=1, i.e. no CPU limit at all. The node
    refuses it (and a zero or missing limit) itself, whatever the control plane sent."""
    for slots in ({"cpu": "1e-9", "mem": "128m"}, {"cpu": "0", "mem": "128m"}, {"mem": "128m"}):
        kernel_id = str(uuid.uuid4())
        reply = await control_plane.request(
            lambda req_id, k=kernel_id, s=slots: CreateKernel(
                req_id, k, "s", OWNER, kernel_image, s
            )
        )
        assert not reply.ok and "is below 0.01" in (reply.error or ""), (slots, reply.error)
        assert not (node.config.state_dir / "k" / kernel_id.replace("-", "")[:12]).exists()
    reply = await control_plane.request(
        lambda req_id: CreateKernel(
            req_id, str(uuid.uuid4()), "s", OWNER, kernel_image, {"cpu": "1", "mem": "1m"}
        )
    )
    assert not reply.ok and "below 6 MiB" in (reply.error or "")
