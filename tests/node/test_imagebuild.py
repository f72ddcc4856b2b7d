"""Kernel images built without a registry: the fast host-Python fixture, for real."""

from __future__ import annotations

import docker
import pytest
from click.testing import CliRunner

from kernelimages import FIXTURE_IMAGE, build, build_image, image_exists
from kernelimages._build import RECIPE_REVISION, REVISION_LABEL

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def fixture_image(docker_client: docker.DockerClient) -> str:
    # Build only when missing, so the suite stays fast (a build takes ~2.5 s).
    if not image_exists(FIXTURE_IMAGE, current=True):
        assert build_image("python-host", log=lambda _: None) == FIXTURE_IMAGE
    assert image_exists(FIXTURE_IMAGE)
    return FIXTURE_IMAGE


def test_fixture_image_runs_the_full_stdlib_as_the_work_user(
    docker_client: docker.DockerClient, fixture_image: str
) -> None:
    # The image exists (checked above), so containers.run cannot pull.
    out = docker_client.containers.run(
        fixture_image,
        # `python`, as Backend.AI's kernels have it, and not only python3
        ["python", "-c", "import json, ssl, sqlite3, asyncio, os; print(6 * 7, os.getcwd())"],
        user="1000:1000",
        network_mode="none",
        labels={"ai.shipyard.test": "imagebuild"},
        remove=True,
    )
    assert out.decode().split() == ["42", "/home/work"]


def test_fixture_image_is_a_kernel_image_without_aliases(
    docker_client: docker.DockerClient, fixture_image: str
) -> None:
    config = docker_client.images.get(fixture_image).attrs["Config"]
    assert config["Labels"] == {
        "ai.shipyard.kernel": "1",
        "ai.shipyard.batch.exec": "python main.py",
        "ai.shipyard.batch.exec.if": "main.py",
        REVISION_LABEL: RECIPE_REVISION,
    }
    assert config["WorkingDir"] == "/home/work"
    assert config["Cmd"] == ["python3"]
    assert "LANG=C.UTF-8" in config["Env"]


def test_build_command_if_missing_skips_an_existing_image(fixture_image: str) -> None:
    result = CliRunner().invoke(build, ["python-host", "--if-missing"])
    assert result.exit_code == 0, result.output
    assert "already exists" in result.output


def test_image_exists_is_false_for_an_unknown_image(docker_client: docker.DockerClient) -> None:
    assert not image_exists("shipyard-test/no-such-image:0")


def test_build_command_rejects_an_unknown_recipe() -> None:
    result = CliRunner().invoke(build, ["nope"])
    assert result.exit_code == 2
    assert "'nope' is not one of" in result.output
