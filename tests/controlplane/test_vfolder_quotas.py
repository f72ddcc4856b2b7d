"""Project quotas on a kernel that has them (issue 13): a storage host on a loop-mounted XFS and
ext4 with `prjquota`, driven through the control plane's API and the node's bind of a folder.

This machine's kernel may lack quota support, so `test_on_a_kernel_with_quota_support` runs the
other tests of this module in a guest under Debian's kernel (tests/quota_vm.py). There they must
pass; elsewhere they skip saying why. Without project quotas a host is "accounted": the API
refuses writes past a quota (tests/controlplane/test_vfolder_files.py, test_vfolders.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controlplane.api.app import create_app
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import create_engine, dispose
from controlplane.server import running_core
from node import vfolders as node_vfolders
from tests import quota_vm
from tests.controlplane.conftest import API, Keypair
from tests.controlplane.test_vfolder_files import upload
from tests.controlplane.test_vfolders import folder, slug, user
from wire import Mount

pytestmark = pytest.mark.anyio
IN_GUEST = os.environ.get("SHIPYARD_QUOTA_GUEST") == "1"  # set by the test that boots it
REPO = Path(__file__).resolve().parents[2]
SESSION_UID = 65536
MKFS = {
    "xfs": ["mkfs.xfs", "-q"],
    "ext4": ["mkfs.ext4", "-q", "-O", "quota,project", "-E", "quotatype=prjquota"],
}


def _unavailable(why: str) -> None:
    if IN_GUEST:
        pytest.fail(f"in the guest, under a kernel with quota support: {why}")
    pytest.skip(f"{why}; test_on_a_kernel_with_quota_support runs this under Debian's kernel")


@pytest.fixture(params=sorted(MKFS))
def prjquota_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted filesystem with project quotas (root, its mkfs, a kernel with quotas)."""
    fs, mkfs = request.param, MKFS[request.param]
    if os.geteuid() != 0:
        _unavailable("mounting a filesystem needs root")
    if shutil.which(mkfs[0]) is None:
        _unavailable(f"no {mkfs[0]}")
    image, point = tmp_path / f"{fs}.img", tmp_path / fs
    with image.open("wb") as f:
        f.truncate(320 << 20)  # XFS wants 300 MiB at least; sparse
    point.mkdir()
    subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
    mount = ["mount", "-o", "loop,prjquota", str(image), str(point)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        _unavailable(f"{fs} with prjquota: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True)


@pytest.fixture
async def api(prjquota_dir: Path, tmp_path: Path) -> AsyncIterator[API]:
    """The control plane in-process (SQLite) with its one storage host on `prjquota_dir`."""
    config = ControlPlaneConfig(
        state_dir=tmp_path,
        node_token="t",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
        vfolder_hosts={"local:volume1": prjquota_dir / "vfolders"},
    )
    engine = create_engine(config.effective_database_url)
    async with running_core(config, engine) as (core, prepared):
        assert prepared is not None
        yield API(create_app(core), core, Keypair(prepared[0].access_key, prepared[1]))
    await dispose(engine)


def _session_writes(root: Path, folder: Path, kdir: Path) -> subprocess.CompletedProcess[bytes]:
    """The sessions' user writing 2 MiB into the folder's `in` as the node binds it for a
    session that mounts `data/in` (node/vfolders.py)."""
    mount = Mount(source=str(folder), target="/home/work/data", subpath="in")
    (bind,) = node_vfolders.binds([root], [mount], kdir)
    try:
        # from inside the mount, as in the container: its parents here are root's, 0700
        write = f"head -c {2 << 20} /dev/zero >big"
        return subprocess.run(
            ["sh", "-c", write],
            cwd=bind.source,
            user=SESSION_UID,
            group=SESSION_UID,
            capture_output=True,
        )
    finally:
        subprocess.run(["umount", str(bind.source)], check=True)
        bind.source.rmdir()


async def test_folders_are_projects_the_kernel_limits(api: API, tmp_path: Path) -> None:
    hosts = await api.call("GET", "/folders/_/hosts")
    info = hosts.body["volume_info"]["local:volume1"]
    assert (info["quota_mode"], info["quota_mode_reason"]) == ("project", None), info
    assert info["project_quota_capable"], info
    host = api.core.vfolder_hosts.get("local:volume1")
    alice = await user(api, "alice@example.com")
    made = await folder(api, "data", alice, quota="1m")
    root = host.folder_path(uuid.UUID(made["id"]))

    # an upload through the API lands in the folder (its partial is in the folder's project)
    await upload(api, "data", "in/a.bin", b"a" * 300_000, alice)
    assert (root / "in" / "a.bin").stat().st_size == 300_000

    # a session writing through the node's bind of a subfolder: the kernel stops it at 1 MiB
    wrote = _session_writes(host.root, root, tmp_path)
    # XFS says ENOSPC for a project over its limit, ext4 EDQUOT
    said = wrote.stderr.lower()
    assert b"quota exceeded" in said or b"no space left" in said, wrote
    assert (root / "in" / "big").stat().st_size <= (1 << 20) - 300_000

    # the folder's usage is the project's, as the kernel counts it
    got = await api.call("GET", "/folders/data", keypair=alice)
    assert (1 << 20) - (64 << 10) <= got.body["used_bytes"] <= 1 << 20, got.body

    # the API refuses an upload that cannot fit, before taking any of it
    refused = await api.call(
        "POST", "/folders/data/request-upload", {"path": "b", "size": 100_000}, keypair=alice
    )
    assert (refused.status, slug(refused.body)) == (413, "vfolder-quota-exceeded")

    # deleted and purged: the files go, and the project's limit with them
    assert (await api.call("DELETE", "/folders/data", keypair=alice)).status == 204
    purged = await api.call("DELETE", f"/folders/_/trash/{made['id']}")
    assert purged.status == 204, purged.body
    assert not root.exists()
    assert host.project_limit(uuid.UUID(made["id"])) is None


def test_on_a_kernel_with_quota_support(tmp_path: Path) -> None:
    """The tests above, in a guest under Debian's kernel (which has XFS and ext4 quotas)."""
    if IN_GUEST:
        pytest.skip("this is the guest")
    why = quota_vm.problem()
    if why:
        pytest.skip(why)
    test = Path(__file__).relative_to(REPO)
    command = (
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        " SHIPYARD_QUOTA_GUEST=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1"
        " PYTEST_DISABLE_PLUGIN_AUTOLOAD=1"  # loading every plugin takes minutes emulated
        f" && {sys.executable} -m pytest -p anyio -p no:cacheprovider -q -rA {test}"
        " -k 'not on_a_kernel'"
    )
    rc, output = quota_vm.run(command, REPO, tmp_path / "guest", timeout=quota_vm.time_limit())
    for fs in sorted(MKFS):
        assert f"PASSED {test}::test_folders_are_projects_the_kernel_limits[{fs}]" in output, output
    assert rc == 0, output
