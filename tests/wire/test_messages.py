"""The node <-> control plane frames: one tagged union, strict types, clear errors, versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import wire

OLD_FRAMES = json.loads((Path(__file__).parent / "fixtures" / "node-1.0-frames.json").read_text())

EVERY_KIND: list[wire.Message] = [
    wire.Register(
        "i-1",
        "0.2.0",
        "x86_64",
        "none",
        {"cpu": "2", "mem": "1000"},
        [wire.ImageInfo("shipyard/python:3.11", "sha256:ab", 10, "x86_64", ["python"])],
        [wire.KernelInfo("k1", "s1", "c1", running=False, exit_code=137, oom_killed=True)],
        protocol=wire.PROTOCOL,
    ),
    wire.Heartbeat(12.5, 1000),
    wire.ImagesChanged([]),
    wire.KernelExited("k1", None, False, "exited"),
    wire.Reply("r1", True, wire.result_dict(wire.KernelDestroyed(0, "bye\n"))),
    wire.RunOutput("run1", "waiting-input", data="name? ", password=True),
    wire.CreateKernel("r2", "k1", "s1", "AKIA", "shipyard/python:3.11", {"cpu": "1"}, {"A": "b"}),
    wire.DestroyKernel("r3", "k1"),
    wire.Execute("k1", "run1", "batch", options={"exec": "make"}),
    wire.Input("k1", "run1", "bob"),
    wire.GetLogs("r4", "k1"),
    wire.Upload("r5", "k1", [wire.UploadFile("a.txt", "aGk=")]),
    wire.FrameRejected("bogus", "unknown frame type"),
]


@pytest.mark.parametrize("message", EVERY_KIND, ids=lambda m: m.type)
def test_every_frame_survives_the_wire(message: wire.Message) -> None:
    text = wire.encode(message)
    assert json.loads(text)["type"] == message.type
    assert wire.decode(text) == message


def test_unknown_type_names_the_frame_and_the_request() -> None:
    with pytest.raises(wire.FrameError) as caught:
        wire.decode('{"type": "open_tunnel", "req_id": "r9", "port": 8080}')
    assert caught.value.frame_type == "open_tunnel"
    assert caught.value.req_id == "r9"  # so the receiver can still answer it
    assert "open_tunnel" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "frame_type", "says"),
    [
        ('{"type": "heartbeat", "cpu_pct": "12", "mem_used_bytes": 1}', "heartbeat", "cpu_pct"),
        ('{"type": "reply", "req_id": "r", "ok": "false"}', "reply", "ok"),
        ('{"type": "run_output", "run_id": "r", "kind": "shout"}', "run_output", "kind"),
        ('{"type": "register", "node_id": "i-1"}', "register", "slots"),
        ('{"type": "upload", "req_id": "r", "kernel_id": "k", "files": [{}]}', "upload", "files.0"),
        ("[1, 2]", "", "JSON object"),
        ("{nope", "", "not JSON"),
        ('{"cpu_pct": 1}', "", "unknown frame type"),
    ],
)
def test_malformed_frames_say_what_is_wrong(text: str, frame_type: str, says: str) -> None:
    with pytest.raises(wire.FrameError) as caught:
        wire.decode(text)
    assert caught.value.frame_type == frame_type
    assert says in str(caught.value)


def test_a_newer_peer_unknown_fields_are_ignored() -> None:
    frame: dict[str, Any] = {
        "type": "heartbeat",
        "cpu_pct": 1.0,
        "mem_used_bytes": 2,
        "gpu_pct": [3.0],  # a field of some later minor version
    }
    assert wire.decode(json.dumps(frame)) == wire.Heartbeat(1.0, 2)


def test_results_are_typed_per_request() -> None:
    reply = wire.Reply("r", True, {"container_id": "abc"})
    assert wire.read_result(reply, wire.KernelCreated) == wire.KernelCreated("abc")
    with pytest.raises(wire.FrameError, match="container_id"):
        wire.read_result(wire.Reply("r", True, {"exit_code": 0}), wire.KernelCreated)
    with pytest.raises(wire.FrameError, match="written"):
        wire.read_result(wire.Reply("r", True, {"written": "a.txt"}), wire.FilesWritten)


def test_protocol_versions() -> None:
    assert wire.protocol_compatible(wire.PROTOCOL)
    assert wire.protocol_compatible("1.0")
    assert wire.protocol_compatible("1.9")
    assert not wire.protocol_compatible("2.0")
    for bad in ("", "1", "1.x", "one.two", "1.0.0"):
        assert not wire.protocol_compatible(bad), bad


# --- what a node of the previous minor version (1.0) really sent ------------------------------


@pytest.mark.parametrize("name", sorted(OLD_FRAMES["frames"]))
def test_frames_of_a_1_0_node_decode(name: str) -> None:
    raw = OLD_FRAMES["frames"][name]
    message = wire.decode(json.dumps(raw))
    assert message.type == raw["type"]


def test_a_1_0_register_is_version_1_0_and_compatible() -> None:
    register = wire.decode(json.dumps(OLD_FRAMES["frames"]["register:with_kernels"]))
    assert isinstance(register, wire.Register)
    assert register.protocol == "1.0"
    assert wire.protocol_compatible(register.protocol)
    assert register.kernels[0].running is True


def test_1_0_results_read_into_the_typed_results() -> None:
    def result(name: str, result_type: type[wire.R]) -> wire.R:
        reply = wire.decode(json.dumps(OLD_FRAMES["frames"][name]))
        assert isinstance(reply, wire.Reply) and reply.ok
        return wire.read_result(reply, result_type)

    assert result("reply:container_id", wire.KernelCreated).container_id
    assert result("reply:exit_code", wire.KernelDestroyed) == wire.KernelDestroyed(None, None)
    assert "hello" in result("reply:logs", wire.KernelLogs).logs
    assert result("reply:written", wire.FilesWritten).written == ["a.txt"]
