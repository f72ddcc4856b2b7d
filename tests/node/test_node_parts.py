"""The node's pure parts, without Docker: addresses, runner requests, uploads, capacity, CLI."""

from __future__ import annotations

import base64
import gc
import os
import shutil
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest
import trio
from click.testing import CliRunner

from node.cli import node as node_cli
from node.config import NodeConfig
from node.errors import NodeError, UploadRejected
from node.hostfs import (
    check_upload,
    install_runner,
    make_kernel_dir,
    make_work_fs,
    remove_kernel_dir,
    write_upload,
)
from node.kernels import check_kernel_uid, check_state_dir, describe_exit, short_id
from node.link import Endpoint
from node.resources import HostLoad, capacity
from node.runner import RUNNER_PATH
from node.runner_client import RunnerSocket, connect
from node.runs import runner_request
from node.runtime import ContainerState
from wire import Execute, Slots

MIB = 2**20


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8081", "ws://127.0.0.1:8081/node/connect"),
        ("http://127.0.0.1:8081/some/prefix", "ws://127.0.0.1:8081/node/connect"),
        ("https://cp.example", "wss://cp.example/node/connect"),
        ("cp.example:9000", "ws://cp.example:9000/node/connect"),
        ("http://[::1]:8081", "ws://[::1]:8081/node/connect"),
    ],
)
def test_endpoint_from_controlplane_url(url: str, expected: str) -> None:
    assert Endpoint.parse(url).url == expected


@pytest.mark.parametrize("url", ["http://", "http://host:port"])
def test_bad_controlplane_url(url: str) -> None:
    with pytest.raises(NodeError, match="controlplane_url"):
        Endpoint.parse(url)


def test_runner_requests() -> None:
    assert runner_request(Execute("k", "r", "query", "print(1)")) == {
        "op": "query",
        "code": "print(1)",
    }
    batch = Execute("k", "r", "batch", options={"clean": "*", "build": None, "exec": "make"})
    assert runner_request(batch) == {"op": "batch", "clean": None, "build": None, "exec": "make"}
    empty = Execute("k", "r", "batch")
    assert runner_request(empty) == {"op": "batch", "clean": None, "build": None, "exec": None}


def test_state_dir_must_leave_room_for_socket_paths() -> None:
    check_state_dir(Path("/var/lib/shipyard/node"))
    with pytest.raises(NodeError, match="too long"):
        check_state_dir(Path("/x" * 40))


def test_short_id_and_exit_descriptions() -> None:
    assert short_id("0F1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0") == "0f1e2d3c4b5a"
    with pytest.raises(NodeError, match="UUID"):
        short_id("../../etc")
    oom = ContainerState("c", {}, running=False, exit_code=137, oom_killed=True, mem_limit=2**27)
    assert describe_exit(oom) == "killed: out of memory (limit 128 MiB)"
    plain = ContainerState("c", {}, running=False, exit_code=3, oom_killed=False, mem_limit=None)
    assert describe_exit(plain) == "exited with code 3"


@pytest.mark.parametrize("path", ["/abs", "../up", "a/../../up", "", ".", "a\0b"])
def test_upload_paths_outside_the_work_dir_are_rejected(path: str) -> None:
    with pytest.raises(UploadRejected):
        check_upload([("fine", "eA=="), (path, "eA==")])


def test_upload_data_must_be_base64() -> None:
    with pytest.raises(UploadRejected, match="base64"):
        check_upload([("fine", "not base64!")])


def test_upload_writes_nested_files_and_never_follows_links(tmp_path: Path) -> None:
    uid = os.getuid()
    work = tmp_path / "work"
    work.mkdir()
    [(path, data)] = check_upload([("./a/b/c.txt", "aGk=")])
    write_upload(work, path, data, uid)
    assert (work / "a" / "b" / "c.txt").read_bytes() == b"hi"
    write_upload(work, PurePosixPath("a/b/c.txt"), b"again", uid)  # overwrite truncates
    assert (work / "a" / "b" / "c.txt").read_bytes() == b"again"

    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "link").symlink_to(outside)
    (work / "file-link").symlink_to(outside / "target")
    os.mkfifo(work / "fifo")
    for planted in ("link/x", "file-link", "fifo"):
        with pytest.raises(UploadRejected):
            write_upload(work, PurePosixPath(planted), b"x", uid)
    assert list(outside.iterdir()) == []


def test_host_folders(tmp_path: Path) -> None:
    folder = install_runner(tmp_path)
    runner = folder / "runner.py"
    assert runner.read_bytes() == RUNNER_PATH.read_bytes()
    assert (runner.stat().st_mode & 0o777, folder.stat().st_mode & 0o777) == (0o644, 0o755)
    runner.write_text("old")
    install_runner(tmp_path)
    assert runner.read_bytes() == RUNNER_PATH.read_bytes()


def test_kernel_folder_has_a_quota_sized_work_filesystem(tmp_path: Path) -> None:
    kdir = tmp_path / "k" / "0123456789ab"
    make_kernel_dir(kdir, 65536, work_quota=True)
    try:
        make_work_fs(kdir, 65536, 8 * MIB, 0)
        for name in ("", "sock"):
            st = (kdir / name).lstat()  # root's: kernels see the socket folder read-only
            assert (st.st_uid, st.st_mode & 0o777) == (0, 0o755), name
        assert os.path.ismount(kdir / "work")
        root = (kdir / "work").stat()  # the work filesystem's root: the kernel's
        assert (root.st_uid, root.st_gid) == (65536, 65536)
        fs = os.statvfs(kdir / "work")
        assert 7 * MIB < fs.f_blocks * fs.f_frsize <= 8 * MIB
        image = (kdir / "work.img").stat()
        assert image.st_blocks * 512 >= 8 * MIB  # preallocated: the disk cannot be overcommitted
        assert (
            "work:x:65536:65536:Shipyard user:/home/work:/bin/sh\n" in (kdir / "passwd").read_text()
        )
        assert "work:x:65536:\n" in (kdir / "group").read_text()
        with pytest.raises(FileExistsError):
            make_kernel_dir(kdir, 65536, work_quota=True)

        [(path, data)] = check_upload([("big.bin", base64.b64encode(bytes(9 * MIB)).decode())])
        with pytest.raises(UploadRejected, match=r"big\.bin: cannot write it \(No space left"):
            write_upload(kdir / "work", path, data, 65536)
    finally:
        remove_kernel_dir(kdir)
    assert not kdir.exists()
    assert not any(
        str(kdir) in line for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )


def test_kernel_folder_without_a_work_quota_is_a_plain_folder(tmp_path: Path) -> None:
    kdir = tmp_path / "k" / "0123456789ab"
    make_kernel_dir(kdir, 65536, work_quota=False)  # for nodes that cannot mount
    assert not os.path.ismount(kdir / "work") and not (kdir / "work.img").exists()
    assert (kdir / "work").stat().st_uid == 65536
    remove_kernel_dir(kdir)
    assert not kdir.exists()


def test_kernel_folder_is_refused_when_it_would_eat_the_disk_reserve(tmp_path: Path) -> None:
    kdir = tmp_path / "k" / "0123456789ab"
    make_kernel_dir(kdir, 65536, work_quota=True)
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(OSError, match="below its reserve of"):
        make_work_fs(kdir, 65536, 8 * MIB, free)
    assert not (kdir / "work.img").exists() and not os.path.ismount(kdir / "work")
    remove_kernel_dir(kdir)


def test_kernel_folders_made_at_once_never_eat_the_disk_reserve(tmp_path: Path) -> None:
    # a 36 MiB disk with an 8 MiB reserve has room for three 8 MiB work filesystems; six made
    # at once (the node makes them concurrently) must not all see the same free space
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=36m", "tmpfs", str(disk)], check=True)
    kdirs = [disk / "k" / f"{i:012x}" for i in range(6)]
    start = threading.Barrier(len(kdirs))

    def make(kdir: Path) -> OSError | None:
        start.wait()
        make_kernel_dir(kdir, 65536, work_quota=True)
        try:
            make_work_fs(kdir, 65536, 8 * MIB, 8 * MIB)
        except OSError as exc:
            remove_kernel_dir(kdir)  # as the node does
            return exc
        return None

    try:
        with ThreadPoolExecutor(len(kdirs)) as threads:
            failures = list(threads.map(make, kdirs))
        made = [kdir for kdir, failure in zip(kdirs, failures, strict=True) if failure is None]
        assert len(made) == 3, failures
        for kdir in made:
            fs = os.statvfs(kdir / "work")
            assert os.path.ismount(kdir / "work") and fs.f_blocks * fs.f_frsize <= 8 * MIB
        refused = [f for f in failures if f is not None]
        assert all("below its reserve of 8 MiB" in str(f) for f in refused), refused
        assert sorted(p.name for p in (disk / "k").iterdir()) == sorted(k.name for k in made)
        assert shutil.disk_usage(disk).free >= 8 * MIB
    finally:
        for kdir in kdirs:
            remove_kernel_dir(kdir)  # a folder that was refused is not there: nothing to do
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.trio
async def test_the_node_talks_to_whoever_dialled_its_socket_never_to_what_the_path_names(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sock"
    runner = RunnerSocket(path, os.getuid())
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # another kernel's listener
    other.bind(str(tmp_path / "other.sock"))
    other.listen(1)
    other.setblocking(False)
    try:
        path.rename(tmp_path / "moved")  # what the runner dialled keeps its inode
        path.symlink_to(tmp_path / "other.sock")  # the path now names someone else
        client = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await client.connect(str(tmp_path / "moved"))
        with trio.fail_after(5):
            async with connect(runner) as conn:
                await client.send(b'{"kind": "pong", "pid": 1}\n')
                assert await conn.receive() == {"kind": "pong", "pid": 1}
        with pytest.raises(BlockingIOError):
            other.accept()  # nobody ever dialled the other socket
        client.close()
    finally:
        runner.close()
        other.close()


def test_kernel_uid_must_not_be_a_host_account() -> None:
    check_kernel_uid(65536)
    with pytest.raises(NodeError, match="kernel_uid 0 is the host account 'root'"):
        check_kernel_uid(0)


def test_capacity_and_load(tmp_path: Path) -> None:
    configured = NodeConfig(tmp_path, "http://cp", "t", cpu=2.5, mem="1.5g")
    assert capacity(configured) == {"cpu": "2.5", "mem": str(3 * 2**29)}
    default = Slots.from_wire(capacity(NodeConfig(tmp_path, "http://cp", "t", mem_reserve="0")))
    assert default["cpu"] == (os.cpu_count() or 1)
    assert default["mem"] == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu_pct, mem_used = HostLoad().sample()
    assert 0 <= cpu_pct <= 100 and mem_used > 0


def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    result = CliRunner().invoke(node_cli, ["serve", "--config", str(missing)])
    assert result.exit_code == 1
    assert result.output == f"Error: {missing}: cannot read it: No such file or directory\n"

    no_state = tmp_path / "node.toml"
    no_state.write_text('controlplane_url = "http://x"\nnode_token = "t"\n')
    result = CliRunner().invoke(node_cli, ["serve", "--config", str(no_state)])
    assert result.exit_code == 1
    assert result.output == f'Error: {no_state}: key "state_dir" is required\n'


# docker-py leaks the socket of a failed connect (UnixHTTPConnection.connect); collect it here
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_cli_reports_startup_failures_in_one_line(short_tmp: Path) -> None:
    config_path = short_tmp / "node.toml"
    NodeConfig(short_tmp / "state", "http://", "t").dump(config_path)
    result = CliRunner().invoke(node_cli, ["serve", "--config", str(config_path)])
    assert (result.exit_code, result.output) == (
        1,
        "Error: controlplane_url 'http://' names no host\n",
    )

    NodeConfig(short_tmp / "state", "http://127.0.0.1:9", "t").dump(config_path)
    result = CliRunner().invoke(
        node_cli,
        ["serve", "--config", str(config_path)],
        env={"DOCKER_HOST": f"unix://{short_tmp}/no.sock"},
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: connecting to the container engine: cannot reach")
    assert result.output.count("\n") == 1
    del result
    gc.collect()
