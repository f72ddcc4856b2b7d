"""Fixtures for end-to-end tests against a real appliance (see shipyard/testing.py)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from shipyard.testing import TEST_IMAGE, Appliance, running_appliance


@pytest.fixture(scope="session")
def test_image() -> str:
    client = docker.from_env()
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(
            f"{TEST_IMAGE} is missing: ./dev test builds it (shipyard image build python-host)"
        )
    finally:
        client.close()
    return TEST_IMAGE


@pytest.fixture(scope="module")
def appliance(test_image: str) -> Iterator[Appliance]:
    with running_appliance() as appliance:
        yield appliance
