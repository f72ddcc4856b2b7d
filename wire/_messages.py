"""Frames exchanged between a node and the control plane over one WebSocket (JSON text frames).

The node dials `GET /node/connect` with `Authorization: Bearer <node token>`, then sends
`Register` first. After that either side may send at any time:

  node -> control plane: Register, Heartbeat, ImagesChanged, KernelExited, Reply, RunOutput
  control plane -> node: CreateKernel, DestroyKernel, Execute, Input, GetLogs, Upload

Requests that expect an answer carry `req_id`; the node answers each with exactly one `Reply`
(ok with a `result`, or not ok with an `error` message for a person). `Execute` has no `Reply`:
its answer is a stream of `RunOutput` frames for its `run_id` that always ends with one whose
kind is "finished".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

RunKind = Literal[
    "stdout", "stderr", "waiting-input", "clean-finished", "build-finished", "finished"
]


@dataclass(frozen=True)
class ImageInfo:
    name: str  # repo:tag as the engine knows it, e.g. "shipyard/python:3.11"
    digest: str  # the engine's image id, "sha256:..."
    size_bytes: int
    architecture: str  # "x86_64" / "aarch64"
    aliases: list[str] = field(default_factory=list)  # from the image label ai.shipyard.aliases
    labels: dict[str, str] = field(default_factory=dict)  # all the image's labels


@dataclass(frozen=True)
class KernelInfo:
    kernel_id: str
    session_id: str
    container_id: str
    running: bool
    exit_code: int | None = None
    oom_killed: bool = False


@dataclass(frozen=True)
class UploadFile:
    path: str  # relative to the kernel's work directory; never absolute, never "..".
    data_b64: str


@dataclass(frozen=True)
class Message:
    type: ClassVar[str]


# --- node -> control plane -------------------------------------------------------------------


@dataclass(frozen=True)
class Register(Message):
    type: ClassVar[str] = "register"
    node_id: str
    version: str
    architecture: str
    network_mode: str  # "none" | "bridge" | "host"
    slots: dict[str, str]  # capacity, e.g. {"cpu": "2", "mem": "25000000000"}
    images: list[ImageInfo]
    kernels: list[KernelInfo]  # every labelled container the node found, running or not
    accelerators: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Heartbeat(Message):
    type: ClassVar[str] = "heartbeat"
    cpu_pct: float
    mem_used_bytes: int


@dataclass(frozen=True)
class ImagesChanged(Message):
    type: ClassVar[str] = "images_changed"
    images: list[ImageInfo]


@dataclass(frozen=True)
class KernelExited(Message):
    """A kernel's container stopped without the control plane asking (crash, OOM, exit)."""

    type: ClassVar[str] = "kernel_exited"
    kernel_id: str
    exit_code: int | None
    oom_killed: bool
    reason: str  # for a person: "killed: out of memory (limit 128 MiB)"


@dataclass(frozen=True)
class Reply(Message):
    type: ClassVar[str] = "reply"
    req_id: str
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class RunOutput(Message):
    type: ClassVar[str] = "run_output"
    run_id: str
    kind: RunKind
    data: str = ""  # text for stdout/stderr; the prompt for waiting-input
    exit_code: int | None = None  # for *-finished
    password: bool = False  # for waiting-input


# --- control plane -> node -------------------------------------------------------------------


@dataclass(frozen=True)
class CreateKernel(Message):
    """Reply result: {"container_id": str}."""

    type: ClassVar[str] = "create_kernel"
    req_id: str
    kernel_id: str
    session_id: str
    owner_access_key: str
    image: str  # the canonical name, already resolved by the control plane
    slots: dict[str, str]
    environ: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DestroyKernel(Message):
    """Reply result: {"exit_code": int | None}. Destroying a kernel that is gone is not an error."""

    type: ClassVar[str] = "destroy_kernel"
    req_id: str
    kernel_id: str


@dataclass(frozen=True)
class Execute(Message):
    type: ClassVar[str] = "execute"
    kernel_id: str
    run_id: str
    mode: Literal["query", "batch"]
    code: str = ""
    # batch: {"clean": str|None, "build": str|None, "exec": str|None}; "*" or None means nothing
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Input(Message):
    """The answer to a waiting-input of run `run_id`."""

    type: ClassVar[str] = "input"
    kernel_id: str
    run_id: str
    text: str


@dataclass(frozen=True)
class GetLogs(Message):
    """Reply result: {"logs": str} — the container's own stdout/stderr."""

    type: ClassVar[str] = "get_logs"
    req_id: str
    kernel_id: str


@dataclass(frozen=True)
class Upload(Message):
    """Reply result: {"written": [paths]}."""

    type: ClassVar[str] = "upload"
    req_id: str
    kernel_id: str
    files: list[UploadFile]


_TYPES: dict[str, type[Message]] = {
    cls.type: cls
    for cls in (
        Register,
        Heartbeat,
        ImagesChanged,
        KernelExited,
        Reply,
        RunOutput,
        CreateKernel,
        DestroyKernel,
        Execute,
        Input,
        GetLogs,
        Upload,
    )
}
_NESTED: dict[tuple[type[Message], str], type] = {
    (Register, "images"): ImageInfo,
    (Register, "kernels"): KernelInfo,
    (ImagesChanged, "images"): ImageInfo,
    (Upload, "files"): UploadFile,
}


def encode(message: Message) -> str:
    return json.dumps({"type": message.type, **asdict(message)}, separators=(",", ":"))


def decode(text: str | bytes) -> Message:
    """Parse one frame; ValueError for anything that is not a known, well-formed message."""
    try:
        raw = json.loads(text)
        cls = _TYPES[raw.pop("type")]
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        for (owner, name), item_cls in _NESTED.items():
            if owner is cls and name in kwargs:
                kwargs[name] = [item_cls(**item) for item in kwargs[name]]
        return cls(**kwargs)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed frame: {exc}") from exc
