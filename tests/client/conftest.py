from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_fakes import FakeAPI


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    """A running fake control plane, with the client's environment pointing at it."""
    fake = FakeAPI()
    fake.start()
    for name in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY"):
        monkeypatch.delenv(f"BACKEND_{name}", raising=False)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    try:
        yield fake
    finally:
        fake.stop()
