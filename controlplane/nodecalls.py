"""Everything the control plane asks of a node, with typed answers.

The only module that sends frames to nodes. A request the node refuses, answers with a
malformed result, or never answers raises NodeUnavailable (saying which node and why).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import replace

import wire
from controlplane.errors import NodeUnavailable
from controlplane.nodehub import NodeHub
from controlplane.runs import RunBuffer

log = logging.getLogger(__name__)

CREATE_TIMEOUT = 180.0
DESTROY_TIMEOUT = 60.0
LOGS_TIMEOUT = 30.0
UPLOAD_TIMEOUT = 60.0
OPEN_STREAM_TIMEOUT = 180.0  # the kernel may start the app on demand first
FILES_TIMEOUT = 60.0


class NodeRefused(NodeUnavailable):
    """The node answered, with an error for a person (bad upload path, unknown image...)."""


async def _call(hub: NodeHub, node_id: str, request: wire.Request, wait: float) -> wire.Reply:
    reply = await hub.get(node_id).request(request, wait)
    if not reply.ok:
        raise NodeRefused(f"node {node_id}: {reply.error}")
    return reply


def _read(node_id: str, reply: wire.Reply, result_type: type[wire.R]) -> wire.R:
    try:
        return wire.read_result(reply, result_type)
    except wire.FrameError as exc:
        log.warning("node %s sent a malformed reply: %s", node_id, exc)
        raise NodeUnavailable(f"node {node_id} sent a malformed reply: {exc}") from exc


async def create_kernel(hub: NodeHub, node_id: str, request: wire.CreateKernel) -> str:
    """Start the kernel's container; its id."""
    reply = await _call(hub, node_id, request, CREATE_TIMEOUT)
    return _read(node_id, reply, wire.KernelCreated).container_id


async def destroy_kernel(hub: NodeHub, node_id: str, kernel_id: str) -> wire.KernelDestroyed:
    """Remove the kernel's container; its exit code and last logs, in one round trip."""
    conn = hub.get(node_id)
    logs = None
    if conn.protocol < (1, 1):  # 1.0 nodes do not send the logs with the destroy
        logs = await get_logs(hub, node_id, kernel_id)
    request = wire.DestroyKernel(req_id="", kernel_id=kernel_id)
    reply = await _call(hub, node_id, request, DESTROY_TIMEOUT)
    destroyed = _read(node_id, reply, wire.KernelDestroyed)
    if logs is not None:
        return wire.KernelDestroyed(destroyed.exit_code, logs)
    return destroyed


async def get_logs(hub: NodeHub, node_id: str, kernel_id: str) -> str:
    reply = await _call(hub, node_id, wire.GetLogs(req_id="", kernel_id=kernel_id), LOGS_TIMEOUT)
    return _read(node_id, reply, wire.KernelLogs).logs


async def upload(
    hub: NodeHub, node_id: str, kernel_id: str, files: list[wire.UploadFile]
) -> list[str]:
    request = wire.Upload(req_id="", kernel_id=kernel_id, files=files)
    reply = await _call(hub, node_id, request, UPLOAD_TIMEOUT)
    return _read(node_id, reply, wire.FilesWritten).written


async def execute(hub: NodeHub, node_id: str, request: wire.Execute) -> RunBuffer:
    """Start a run; its output arrives in the returned buffer until `hub.close_run`."""
    conn = hub.get(node_id)
    buffer = RunBuffer(request.run_id, node_id)
    hub.open_run(buffer)
    try:
        await conn.send(request)
    except BaseException:
        hub.close_run(request.run_id)
        raise
    return buffer


async def send_input(hub: NodeHub, node_id: str, kernel_id: str, run_id: str, text: str) -> None:
    await hub.get(node_id).send(wire.Input(kernel_id=kernel_id, run_id=run_id, text=text))


async def open_stream(
    hub: NodeHub, node_id: str, kernel_id: str, target: wire.OpenStream
) -> wire.RelayStream:
    """A byte stream to a port or a new terminal in the kernel (`target`'s stream id and
    req_id are filled in here); NodeRefused saying why when the node cannot connect it."""
    conn = hub.get(node_id)
    if conn.protocol < (1, 2):
        raise NodeRefused(f"node {node_id} is too old to relay streams (protocol 1.2 needed)")
    stream = conn.streams.open()  # before asking: the node may send data ahead of its Reply
    request = replace(target, kernel_id=kernel_id, stream_id=stream.stream_id)
    try:
        reply = await _call(hub, node_id, request, OPEN_STREAM_TIMEOUT)
        _read(node_id, reply, wire.StreamOpened)
    except BaseException as exc:
        stream.closed_by_peer(str(exc))
        raise
    return stream


async def list_files(hub: NodeHub, node_id: str, kernel_id: str, path: str) -> list[wire.FileEntry]:
    request = wire.ListFiles(req_id="", kernel_id=kernel_id, path=path)
    reply = await _call(hub, node_id, request, FILES_TIMEOUT)
    return _read(node_id, reply, wire.FilesListed).entries


async def download(
    hub: NodeHub, node_id: str, kernel_id: str, paths: list[str], max_bytes: int
) -> list[bytes]:
    """One tar archive per path, each at most `max_bytes`."""
    request = wire.DownloadFiles(req_id="", kernel_id=kernel_id, paths=paths, max_bytes=max_bytes)
    reply = await _call(hub, node_id, request, FILES_TIMEOUT)
    archives = _read(node_id, reply, wire.FilesArchived).archives_b64
    if len(archives) != len(paths):
        raise NodeUnavailable(f"node {node_id} sent {len(archives)} archives for {len(paths)}")
    try:
        return [base64.b64decode(a, validate=True) for a in archives]
    except binascii.Error as exc:
        raise NodeUnavailable(f"node {node_id} sent a malformed archive: {exc}") from exc


async def interrupt(hub: NodeHub, node_id: str, kernel_id: str) -> None:
    request = wire.InterruptKernel(req_id="", kernel_id=kernel_id)
    _read(node_id, await _call(hub, node_id, request, FILES_TIMEOUT), wire.KernelInterrupted)


async def complete(hub: NodeHub, node_id: str, kernel_id: str, code: str) -> list[str]:
    request = wire.CompleteCode(req_id="", kernel_id=kernel_id, code=code)
    return _read(node_id, await _call(hub, node_id, request, FILES_TIMEOUT), wire.Completions).items


async def restart(hub: NodeHub, node_id: str, kernel_id: str) -> None:
    request = wire.RestartKernel(req_id="", kernel_id=kernel_id)
    _read(node_id, await _call(hub, node_id, request, CREATE_TIMEOUT), wire.KernelRestarted)
