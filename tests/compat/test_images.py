"""`backend.ai admin image list` shows the images the platform knows, not every labelled image on
the engine: a hand-made kernel image appears only once `shipyard image register` makes it known,
and goes again with `shipyard image forget` (issue 9 item 6).

The hand-made image exists before its appliance starts, so the node's first report has it."""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from shipyard.testing import TEST_IMAGE, Appliance, running_appliance
from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker


@pytest.fixture
def hand_made() -> Iterator[str]:
    """An image with the kernel label that no recipe built (an empty root file system)."""
    name = f"shipyard-test/hand-made:{uuid.uuid4().hex[:8]}"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w"):
        pass
    archive.seek(0)
    client = docker.from_env()
    repository, tag = name.split(":")
    changes = ["LABEL ai.shipyard.kernel=1 ai.shipyard.aliases=hand"]
    client.api.import_image(src=archive, repository=repository, tag=tag, changes=changes)
    try:
        yield name
    finally:
        client.images.remove(name, force=True)
        client.close()


@pytest.fixture
def appliance(hand_made: str, bai_executable: Path) -> Iterator[Appliance]:
    with running_appliance() as started:
        yield started


def _listed(bai: BackendAI) -> dict[str, dict[str, object]]:
    items = bai.json("admin", "image", "list")["items"]
    return {f"{i['name']}:{i['tag']}": i for i in items}


def test_admin_image_list_shows_known_images_only(
    appliance: Appliance, hand_made: str, bai_executable: Path, tmp_path: Path
) -> None:
    bai = BackendAI(bai_executable, appliance, tmp_path)
    listed = _listed(bai)
    # built by recipe: known; the hand-made one: not (other tests' images may be known too)
    assert TEST_IMAGE in listed and hand_made not in listed
    assert listed[TEST_IMAGE]["architecture"] in ("x86_64", "aarch64")
    refused = bai("session", "create", "-r", "cpu=0.25", hand_made)
    assert refused.returncode == 1
    assert "No such environment image." in refused.stderr

    shown = appliance.cli("image", "ls", "--labels")
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    [row] = [r for r in rows if r.split()[0] == TEST_IMAGE]
    assert header.split() == [
        "NAME", "SOURCE", "DIGEST", "SIZE", "ARCH", "ALIASES", "NODES", "LABELS",
    ]  # fmt: skip
    assert row.split()[:2] == [TEST_IMAGE, "recipe"]
    assert "ai.shipyard.batch.exec.if=main.py" in row

    registered = appliance.cli("image", "register", hand_made)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout == f"registered {hand_made} (on {appliance.node_id})\n"
    listed = _listed(bai)
    assert {TEST_IMAGE, hand_made} <= set(listed)
    assert listed[hand_made]["aliases"] == ["hand"]  # adopted from its label on registration

    forgot = appliance.cli("image", "forget", hand_made)
    assert (forgot.returncode, forgot.stdout) == (0, f"forgot {hand_made}\n"), forgot.stderr
    assert hand_made not in _listed(bai)
    again = appliance.cli("image", "forget", hand_made)
    assert again.returncode == 1
    assert (
        again.stderr
        == f"shipyard: error: No such environment image. (404): No known image {hand_made!r}.\n"
    )
