"""Virtual folders bound into kernels on real Docker (issue 13 item 4): what a session writes
outlives it and belongs to the container user in the next session; a read-only mount cannot be
written; one folder in two kernels at once; the node binds nothing but folders of its roots."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest
import trio

from node.config import NodeConfig
from node.testing import FakeControlPlane, NodeProcess, text_of
from tests.node.conftest import OWNER
from wire import CreateKernel, DestroyKernel, Mount

pytestmark = [pytest.mark.trio, pytest.mark.docker]


@pytest.fixture
def vfolder_root(state_dir: Path) -> Path:
    root = state_dir / "vf"
    root.mkdir()
    return root


@pytest.fixture
def node_config(node_config: NodeConfig, vfolder_root: Path) -> NodeConfig:
    return dataclasses.replace(node_config, vfolder_roots=[vfolder_root])


def make_folder(root: Path, uid: int) -> Path:
    path = root / uuid.uuid4().hex
    path.mkdir()
    os.chown(path, uid, uid)
    return path


async def create(
    control_plane: FakeControlPlane, image: str, mounts: list[Mount]
) -> tuple[str, str | None]:
    kernel_id = str(uuid.uuid4())
    reply = await control_plane.request(
        lambda req_id: CreateKernel(
            req_id,
            kernel_id,
            str(uuid.uuid4()),
            OWNER,
            image,
            {"cpu": "0.5", "mem": "128m"},
            mounts=mounts,
        )
    )
    return kernel_id, None if reply.ok else reply.error


async def run(control_plane: FakeControlPlane, kernel_id: str, code: str) -> str:
    outputs = await control_plane.execute(kernel_id, code)
    return text_of(outputs) + text_of(outputs, "stderr")


async def test_files_outlive_the_session_owned_by_the_container_user(
    node: NodeProcess, control_plane: FakeControlPlane, kernel_image: str, vfolder_root: Path
) -> None:
    uid = node.config.kernel_uid
    data = make_folder(vfolder_root, uid)
    first, error = await create(control_plane, kernel_image, [Mount(str(data), "/home/work/data")])
    assert error is None, error
    wrote = await run(
        control_plane,
        first,
        "import os; os.makedirs('data/out', exist_ok=True);"
        "open('data/out/result.bin', 'wb').write(bytes(range(256)) * 4); print('ok')",
    )
    assert wrote == "ok\n"
    await control_plane.request(lambda req_id: DestroyKernel(req_id, first))
    kept = data / "out" / "result.bin"
    assert kept.read_bytes() == bytes(range(256)) * 4
    assert (kept.stat().st_uid, kept.stat().st_gid) == (uid, uid)
    # the next session, and a third at the same time, read-only
    second, error = await create(control_plane, kernel_image, [Mount(str(data), "/home/work/d")])
    assert error is None, error
    third, error = await create(
        control_plane, kernel_image, [Mount(str(data), "/mnt/ro", read_only=True)]
    )
    assert error is None, error
    owned = await run(
        control_plane,
        second,
        "import os; s = os.stat('d/out/result.bin');"
        "print(s.st_uid == os.getuid(), s.st_gid == os.getgid(), s.st_size);"
        "open('d/out/more', 'w').write('x'); print('wrote')",
    )
    assert owned == "True True 1024\nwrote\n"
    readonly = await run(
        control_plane,
        third,
        "import os\nprint(sorted(os.listdir('/mnt/ro/out')))\n"
        "try:\n    open('/mnt/ro/out/x', 'w')\nexcept OSError as e:\n    print(e.errno == 30)",
    )
    assert readonly == "['more', 'result.bin']\nTrue\n"


async def test_a_folder_inside_a_folder_is_bound_and_released(
    node: NodeProcess, control_plane: FakeControlPlane, kernel_image: str, vfolder_root: Path
) -> None:
    uid = node.config.kernel_uid
    data = make_folder(vfolder_root, uid)
    (data / "sub" / "dir").mkdir(parents=True)
    os.chown(data / "sub" / "dir", uid, uid)
    (data / "top.txt").write_text("not inside")
    mount = Mount(str(data), "/home/work/dir", subpath="sub/dir")
    kernel_id, error = await create(control_plane, kernel_image, [mount])
    assert error is None, error
    wrote = await run(
        control_plane,
        kernel_id,
        "import os; open('dir/made', 'w').write('in sub/dir'); print(sorted(os.listdir('dir')))",
    )
    assert wrote == "['made']\n"
    await control_plane.request(lambda req_id: DestroyKernel(req_id, kernel_id))
    # the kernel's folder went, its bind first: nothing of the folder was removed with it
    assert (data / "sub" / "dir" / "made").read_text() == "in sub/dir"
    assert (data / "top.txt").exists()
    assert str(data) not in await trio.Path("/proc/self/mountinfo").read_text()


@pytest.mark.parametrize(
    "where", ["outside", "link", "nested", "relative-target", "subfolder-link", "subfolder-up"]
)
async def test_node_binds_only_folders_of_its_roots(
    node: NodeProcess,
    control_plane: FakeControlPlane,
    kernel_image: str,
    vfolder_root: Path,
    tmp_path: Path,
    where: str,
) -> None:
    folder = make_folder(vfolder_root, node.config.kernel_uid)
    target = "/home/work/x"
    if where == "outside":
        source = str(tmp_path)
    elif where == "link":
        source = str(vfolder_root / uuid.uuid4().hex)
        os.symlink("/etc", source)
    elif where == "nested":
        (folder / "sub").mkdir()
        source = str(folder / "sub")
    elif where == "relative-target":
        source, target = str(folder), "home/work/x"
    else:  # a link a session left where a folder was, or a way out
        os.symlink("/etc", folder / "sub")
        source, subpath = str(folder), "sub" if where == "subfolder-link" else "../.."
    mount = Mount(source, target, subpath=subpath if where.startswith("subfolder") else "")
    _, error = await create(control_plane, kernel_image, [mount])
    assert error is not None
    assert any(
        says in error
        for says in ("vfolder_roots", "not a directory", "absolute", "without links", "plain path")
    ), error
