"""Frames exchanged between a node and the control plane over one WebSocket (JSON text frames).

The node dials `GET /node/connect` with `Authorization: Bearer <node token>`, then sends
`Register` first. After that either side may send at any time:

  node -> control plane: Register, Heartbeat, ImagesChanged, KernelExited, Reply, RunOutput
  control plane -> node: CreateKernel, DestroyKernel, Execute, Input, GetLogs, Upload,
                         OpenStream, ListFiles, DownloadFiles, InterruptKernel, CompleteCode,
                         RestartKernel
  either way:            FrameRejected (the other side sent something it could not read),
                         StreamWindow, StreamClose, and relay data (binary frames, below)

Every frame is a JSON object whose `type` names its class; together they are one tagged union,
validated by pydantic. Requests carry `req_id`; the node answers each with exactly one `Reply`
(ok with a `result`, or not ok with an `error` for a person). Each request kind has its own result
type (CreateKernel: KernelCreated, DestroyKernel: KernelDestroyed, GetLogs: KernelLogs, Upload:
FilesWritten, ListFiles: FilesListed, DownloadFiles: FilesArchived, InterruptKernel:
KernelInterrupted, CompleteCode: Completions, RestartKernel: KernelRestarted), which the
requester validates with
`read_result`. `Execute` has no `Reply`: its answer is a stream of `RunOutput` frames for its
`run_id` that always ends with one whose kind is "finished".

Relayed byte streams (since 1.2): `OpenStream` (answered by a Reply with `StreamOpened`) asks the
node to connect stream `stream_id` to something inside a kernel through its runner: a TCP port
on the container's own loopback (`target` "port") or a new terminal (`target` "pty"). The bytes
then travel as *binary* WebSocket frames, `encode_data`: 4 bytes of stream id (big-endian) and
the payload. Each side may have at most `STREAM_WINDOW` bytes the other has not acknowledged
with `StreamWindow`; `StreamClose` from either side ends the stream (wire/_relay.py).

Versions: `Register.protocol` is "MAJOR.MINOR". Peers with the same major understand each other:
a newer peer's unknown fields are ignored and an older peer's missing optional fields take their
defaults. 1.0 had no `protocol` field (so a missing one means 1.0) and its `DestroyKernel` result
had no `logs`; 1.1 heartbeats carried no statistics of devices and kernels.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

PROTOCOL = "1.2"
RunKind = Literal[
    "stdout", "stderr", "waiting-input", "clean-finished", "build-finished", "finished"
]
# strict: "false" is not a bool, "1" not an int; unknown fields (from a newer peer) are ignored
_CONFIG = ConfigDict(extra="ignore", strict=True)


def _tag(name: str) -> Any:
    """The `type` field: keyword-only, so the payload fields keep their positional order."""
    return field(default=name, kw_only=True)


@dataclass(frozen=True, config=_CONFIG)
class ImageInfo:
    name: str  # repo:tag as the engine knows it, e.g. "shipyard/python:3.11"
    digest: str  # the engine's image id, "sha256:..."
    size_bytes: int
    architecture: str  # "x86_64" / "aarch64"
    aliases: list[str] = field(default_factory=list)  # from the image label ai.shipyard.aliases
    labels: dict[str, str] = field(default_factory=dict)  # all the image's labels


@dataclass(frozen=True, config=_CONFIG)
class KernelInfo:
    kernel_id: str
    session_id: str
    container_id: str
    running: bool
    exit_code: int | None = None
    oom_killed: bool = False


@dataclass(frozen=True, config=_CONFIG)
class UploadFile:
    path: str  # relative to the kernel's work directory; never absolute, never "..".
    data_b64: str


# --- results of requests (the `result` of an ok Reply) -----------------------------------------


@dataclass(frozen=True, config=_CONFIG)
class Mount:
    """A virtual folder bound into a kernel: `source` is the folder's path on the node's host
    (a storage host's directory), `target` the path inside the container, `subpath` the
    folder inside it that is bound ("" for the whole folder)."""

    source: str
    target: str
    read_only: bool = False
    # a folder inside the folder ("a/b"); the node walks it without following links
    subpath: str = ""


@dataclass(frozen=True, config=_CONFIG)
class KernelCreated:
    container_id: str


@dataclass(frozen=True, config=_CONFIG)
class KernelDestroyed:
    exit_code: int | None = None  # None: it was still running (killed by the destroy) or gone
    logs: str | None = None  # the container's last output (since 1.1; None from 1.0 nodes)


@dataclass(frozen=True, config=_CONFIG)
class KernelLogs:
    logs: str


@dataclass(frozen=True, config=_CONFIG)
class FilesWritten:
    written: list[str]


@dataclass(frozen=True, config=_CONFIG)
class StreamOpened:
    stream_id: int


@dataclass(frozen=True, config=_CONFIG)
class FileEntry:
    name: str
    mode: str  # as `ls -l` shows it: "-rw-r--r--", "drwxr-xr-x"
    size: int
    ctime: float  # seconds since the epoch
    mtime: float
    atime: float


@dataclass(frozen=True, config=_CONFIG)
class FilesListed:
    entries: list[FileEntry]


@dataclass(frozen=True, config=_CONFIG)
class FilesArchived:
    archives_b64: list[str]  # one tar archive per requested path, in order


@dataclass(frozen=True, config=_CONFIG)
class KernelInterrupted:
    interrupted: bool = True


@dataclass(frozen=True, config=_CONFIG)
class Completions:
    items: list[str]


@dataclass(frozen=True, config=_CONFIG)
class KernelRestarted:
    restarted: bool = True


Result = (
    KernelCreated
    | StreamOpened
    | KernelDestroyed
    | KernelLogs
    | FilesWritten
    | FilesListed
    | FilesArchived
    | KernelInterrupted
    | Completions
    | KernelRestarted
)
R = TypeVar(
    "R",
    KernelCreated,
    KernelDestroyed,
    KernelLogs,
    FilesWritten,
    StreamOpened,
    FilesListed,
    FilesArchived,
    KernelInterrupted,
    Completions,
    KernelRestarted,
)


# --- node -> control plane -------------------------------------------------------------------


@dataclass(frozen=True, config=_CONFIG)
class Register:
    node_id: str
    version: str
    architecture: str
    network_mode: str  # "none" | "bridge" | "host"
    slots: dict[str, str]  # capacity, e.g. {"cpu": "2", "mem": "25000000000"}
    images: list[ImageInfo]
    kernels: list[KernelInfo]  # every labelled container the node found, running or not
    accelerators: list[dict[str, Any]] = field(default_factory=list)
    protocol: str = "1.0"  # 1.0 nodes did not send it
    type: Literal["register"] = _tag("register")


@dataclass(frozen=True, config=_CONFIG)
class DeviceStats:
    plugin: str  # "nvidia", "amd", "mock"
    device_id: str
    util_pct: float | None  # None: the driver does not say
    mem_used: int  # bytes
    mem_total: int


@dataclass(frozen=True, config=_CONFIG)
class KernelStats:
    """One running kernel, read from its cgroup: counters are totals since it started."""

    kernel_id: str
    cpu_pct: float  # of one core since the previous heartbeat (a busy loop reads about 100)
    cpu_used_ms: int
    mem_used: int  # bytes, without the page cache it can drop
    mem_limit: int | None
    io_read: int  # bytes
    io_write: int
    net_rx: int  # bytes, loopback left out
    net_tx: int
    devices: list[DeviceStats] = field(default_factory=list)  # those the kernel holds


@dataclass(frozen=True, config=_CONFIG)
class Heartbeat:
    cpu_pct: float
    mem_used_bytes: int
    mem_total_bytes: int = 0  # since 1.2, as are the statistics below (0 and empty before)
    devices: list[DeviceStats] = field(default_factory=list)  # every device of the node
    kernels: list[KernelStats] = field(default_factory=list)
    type: Literal["heartbeat"] = _tag("heartbeat")


@dataclass(frozen=True, config=_CONFIG)
class ImagesChanged:
    images: list[ImageInfo]
    type: Literal["images_changed"] = _tag("images_changed")


@dataclass(frozen=True, config=_CONFIG)
class KernelExited:
    """A kernel's container stopped without the control plane asking (crash, OOM, exit)."""

    kernel_id: str
    exit_code: int | None
    oom_killed: bool
    reason: str  # for a person: "killed: out of memory (limit 128 MiB)"
    type: Literal["kernel_exited"] = _tag("kernel_exited")


@dataclass(frozen=True, config=_CONFIG)
class Reply:
    req_id: str
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)  # read it with `read_result`
    error: str = ""
    type: Literal["reply"] = _tag("reply")


@dataclass(frozen=True, config=_CONFIG)
class RunOutput:
    run_id: str
    kind: RunKind
    data: str = ""  # text for stdout/stderr; the prompt for waiting-input
    exit_code: int | None = None  # for *-finished
    password: bool = False  # for waiting-input
    # for finished, when the program did not end on its own: "killed: out of memory (...)"
    reason: str = ""
    type: Literal["run_output"] = _tag("run_output")


# --- control plane -> node -------------------------------------------------------------------


@dataclass(frozen=True, config=_CONFIG)
class CreateKernel:
    """Result: KernelCreated."""

    req_id: str
    kernel_id: str
    session_id: str
    owner_access_key: str
    image: str  # the canonical name, already resolved by the control plane
    slots: dict[str, str]
    environ: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    type: Literal["create_kernel"] = _tag("create_kernel")


@dataclass(frozen=True, config=_CONFIG)
class DestroyKernel:
    """Result: KernelDestroyed. Destroying a kernel that is gone is not an error (its exit code
    and logs are None)."""

    req_id: str
    kernel_id: str
    type: Literal["destroy_kernel"] = _tag("destroy_kernel")


@dataclass(frozen=True, config=_CONFIG)
class Execute:
    kernel_id: str
    run_id: str
    mode: Literal["query", "batch"]
    code: str = ""
    # batch: {"clean": str|None, "build": str|None, "exec": str|None}; "*" or None means nothing
    options: dict[str, Any] = field(default_factory=dict)
    type: Literal["execute"] = _tag("execute")


@dataclass(frozen=True, config=_CONFIG)
class Input:
    """The answer to a waiting-input of run `run_id`."""

    kernel_id: str
    run_id: str
    text: str
    type: Literal["input"] = _tag("input")


@dataclass(frozen=True, config=_CONFIG)
class GetLogs:
    """Result: KernelLogs, the container's own stdout/stderr."""

    req_id: str
    kernel_id: str
    type: Literal["get_logs"] = _tag("get_logs")


@dataclass(frozen=True, config=_CONFIG)
class Upload:
    """Result: FilesWritten."""

    req_id: str
    kernel_id: str
    files: list[UploadFile]
    type: Literal["upload"] = _tag("upload")


@dataclass(frozen=True, config=_CONFIG)
class OpenStream:
    """Result: StreamOpened, once the kernel's runner reached the target (an app started on
    demand may take a while). `port`: the app's port on the container's loopback; `app`: its
    name, so the runner can start it from the image's service definition when nothing listens.
    `pty`: a terminal of `rows` x `cols` running `command` (the login shell when empty).
    `env`: added to the environment of an app the runner starts for this stream."""

    req_id: str
    kernel_id: str
    stream_id: int
    target: Literal["port", "pty"]
    port: int = 0
    app: str = ""
    rows: int = 24
    cols: int = 80
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    type: Literal["open_stream"] = _tag("open_stream")


@dataclass(frozen=True, config=_CONFIG)
class StreamWindow:
    """The sender of this frame consumed `size` more bytes of the stream: the other side may
    send that many more."""

    stream_id: int
    size: int
    type: Literal["stream_window"] = _tag("stream_window")


@dataclass(frozen=True, config=_CONFIG)
class StreamClose:
    """The stream is over, both ways (`error` says why when it broke)."""

    stream_id: int
    error: str = ""
    type: Literal["stream_close"] = _tag("stream_close")


@dataclass(frozen=True, config=_CONFIG)
class ListFiles:
    """Result: FilesListed, the entries of a folder of the kernel's work directory."""

    req_id: str
    kernel_id: str
    path: str  # relative to the work directory, or absolute under /home/work
    type: Literal["list_files"] = _tag("list_files")


@dataclass(frozen=True, config=_CONFIG)
class DownloadFiles:
    """Result: FilesArchived, one tar archive per path (a file under its own name, a folder
    with its tree; links and special files are left out)."""

    req_id: str
    kernel_id: str
    paths: list[str]  # as in ListFiles
    max_bytes: int  # the most one archive may hold
    type: Literal["download_files"] = _tag("download_files")


@dataclass(frozen=True, config=_CONFIG)
class InterruptKernel:
    """Result: KernelInterrupted. SIGINT to the kernel's runner: a running query gets
    KeyboardInterrupt, a running batch command's process group SIGINT."""

    req_id: str
    kernel_id: str
    type: Literal["interrupt_kernel"] = _tag("interrupt_kernel")


@dataclass(frozen=True, config=_CONFIG)
class CompleteCode:
    """Result: Completions for the last word of `code` in the kernel's query interpreter
    (none while the kernel is busy with a run)."""

    req_id: str
    kernel_id: str
    code: str
    type: Literal["complete_code"] = _tag("complete_code")


@dataclass(frozen=True, config=_CONFIG)
class RestartKernel:
    """Result: KernelRestarted once the runner answers again. The container is restarted in
    place: a fresh interpreter, /tmp emptied, the work directory kept."""

    req_id: str
    kernel_id: str
    type: Literal["restart_kernel"] = _tag("restart_kernel")


@dataclass(frozen=True, config=_CONFIG)
class FrameRejected:
    """Sent back for a frame the receiver could not read; the connection stays up."""

    frame_type: str  # the `type` the bad frame claimed ("" when it had none)
    error: str
    type: Literal["frame_rejected"] = _tag("frame_rejected")


Message = (
    Register
    | Heartbeat
    | ImagesChanged
    | KernelExited
    | Reply
    | RunOutput
    | CreateKernel
    | DestroyKernel
    | Execute
    | Input
    | GetLogs
    | Upload
    | OpenStream
    | StreamWindow
    | StreamClose
    | ListFiles
    | DownloadFiles
    | InterruptKernel
    | CompleteCode
    | RestartKernel
    | FrameRejected
)
Request = (
    CreateKernel
    | DestroyKernel
    | GetLogs
    | Upload
    | OpenStream
    | ListFiles
    | DownloadFiles
    | InterruptKernel
    | CompleteCode
    | RestartKernel
)
_FRAME: TypeAdapter[Message] = TypeAdapter(Annotated[Message, Field(discriminator="type")])
_TYPES = {cls.__dataclass_fields__["type"].default for cls in Message.__args__}


class FrameError(ValueError):
    """A frame that is not a known, well-formed message. Says which frame and what is wrong."""

    def __init__(self, frame_type: str, problem: str, req_id: str | None = None) -> None:
        super().__init__(f"{frame_type or 'untyped'} frame: {problem}")
        self.frame_type = frame_type
        self.req_id = req_id  # set when the bad frame was a request: it can still be answered


def encode(message: Message) -> str:
    return _FRAME.dump_json(message).decode()


def decode(text: str | bytes) -> Message:
    """Parse one frame; FrameError for anything that is not a known, well-formed message."""
    try:
        return _FRAME.validate_json(text)
    except ValidationError as exc:
        failure = exc
    try:  # only to say what was wrong: which frame, and which request could still be answered
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError("", f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise FrameError("", f"a frame must be a JSON object, not {type(raw).__name__}")
    frame_type = raw.get("type")
    req_id = raw.get("req_id")
    req_id = req_id if isinstance(req_id, str) else None
    if not isinstance(frame_type, str) or frame_type not in _TYPES:
        raise FrameError(str(frame_type or ""), "unknown frame type", req_id)
    raise FrameError(frame_type, _describe(failure), req_id) from failure


STREAM_WINDOW = 1024 * 1024  # unacknowledged bytes a stream's sender may have in flight
_STREAM_ID = struct.Struct(">I")


def encode_data(stream_id: int, data: bytes) -> bytes:
    """A binary frame carrying `data` of stream `stream_id`."""
    return _STREAM_ID.pack(stream_id) + data


def decode_data(frame: bytes) -> tuple[int, bytes]:
    """(stream id, payload) of a binary frame; FrameError when it is too short."""
    if len(frame) < _STREAM_ID.size:
        raise FrameError("data", f"a binary frame needs {_STREAM_ID.size} bytes of stream id")
    return _STREAM_ID.unpack_from(frame)[0], frame[_STREAM_ID.size :]


def read_result(reply: Reply, result_type: type[R]) -> R:
    """The typed result of an ok reply; FrameError if the node sent something else."""
    try:
        # as JSON, so that nested results (FilesListed's entries) validate as the frames do
        return TypeAdapter(result_type).validate_json(json.dumps(reply.result))
    except (ValidationError, TypeError) as exc:
        problem = _describe(exc, skip=0) if isinstance(exc, ValidationError) else str(exc)
        raise FrameError("reply", problem, reply.req_id) from exc


def result_dict(result: Result) -> dict[str, Any]:
    """What an ok Reply carries for `result`."""
    return dataclasses.asdict(result)


def protocol_compatible(theirs: str) -> bool:
    """A "MAJOR.MINOR" with our major (minor versions add optional fields only)."""
    major, dot, minor = theirs.partition(".")
    return bool(dot) and major.isdigit() and minor.isdigit() and major == PROTOCOL.split(".")[0]


def _describe(exc: ValidationError, skip: int = 1) -> str:
    """Each wrong field and why; `skip` drops the union's tag from the location."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc'][skip:]) or 'frame'}: {error['msg']}"
        for error in exc.errors()[:5]
    )
