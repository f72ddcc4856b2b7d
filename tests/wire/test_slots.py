from decimal import Decimal

import pytest

import wire


def test_sizes_and_arithmetic() -> None:
    request = wire.Slots({"cpu": "1", "mem": "512m"})
    assert request["mem"] == 512 * 2**20
    capacity = wire.Slots({"cpu": "2", "mem": "1g"})
    assert request.fits_in(capacity)
    free = capacity - request - request
    assert free == wire.Slots({"cpu": "0", "mem": "0"})
    assert not request.fits_in(free)
    assert request.shortfall(free) == ["cpu", "mem"]
    assert (request + request).to_wire() == {"cpu": "2", "mem": str(2**30)}
    assert wire.Slots({"mem": "128MiB"}).describe() == "mem=128 MiB"
    assert wire.Slots({"cpu": "0.5"})["cpu"] == Decimal("0.5")


@pytest.mark.parametrize("bad", [{"mem": "lots"}, {"cpu": "x"}, {"cpu": "-1"}])
def test_bad_values_say_what_is_wrong(bad: dict[str, str]) -> None:
    with pytest.raises(wire.SlotsError):
        wire.Slots(bad)


def test_frames_round_trip() -> None:
    message = wire.Execute(kernel_id="k", run_id="r", mode="batch", options={"exec": "ls"})
    assert wire.decode(wire.encode(message)) == message
    with pytest.raises(ValueError):
        wire.decode('{"type": "nonsense"}')
    with pytest.raises(ValueError):
        wire.decode("not json")
