"""The frames of a terminal stream between the control plane and the kernel's runner.

A `pty` stream (node/runner/shipyard_relay.py) carries frames of one type byte, 4 bytes of length
(big-endian) and the payload: to the kernel `i` (input bytes) and `r` (rows, cols: 2 bytes
each); from it `o` (output bytes) and last `x` (the exit status, 4 bytes, signed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_HEADER = struct.Struct(">cI")
_SIZE = struct.Struct(">HH")
_STATUS = struct.Struct(">i")
MAX_FRAME = 1024 * 1024  # the runner's frames are at most 64 KiB


def input_frame(data: bytes) -> bytes:
    return _HEADER.pack(b"i", len(data)) + data


def resize_frame(rows: int, cols: int) -> bytes:
    return _HEADER.pack(b"r", _SIZE.size) + _SIZE.pack(rows, cols)


@dataclass(frozen=True)
class Output:
    data: bytes


@dataclass(frozen=True)
class Exited:
    status: int


class TerminalReader:
    """Splits what the kernel sends into Output and Exited events."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Output | Exited]:
        """The complete frames so far; ValueError for a frame that is not one of the kernel's."""
        self._buffer += data
        events: list[Output | Exited] = []
        while len(self._buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME:
                raise ValueError(f"a terminal frame of {size} bytes")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            if kind == b"o":
                events.append(Output(payload))
            elif kind == b"x" and size == _STATUS.size:
                events.append(Exited(_STATUS.unpack(payload)[0]))
            else:
                raise ValueError(f"an unknown terminal frame {kind!r}")
        return events
