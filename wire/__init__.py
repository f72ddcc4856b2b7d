"""The contract between Shipyard's processes: wire messages, resource slots, request signing.

Plain data and pure functions only — no I/O — so the control plane (asyncio), the node (trio)
and the client can all import it.
"""

from wire._messages import (
    CreateKernel,
    DestroyKernel,
    Execute,
    GetLogs,
    Heartbeat,
    ImageInfo,
    ImagesChanged,
    Input,
    KernelExited,
    KernelInfo,
    Message,
    Register,
    Reply,
    RunOutput,
    Upload,
    UploadFile,
    decode,
    encode,
)
from wire._signing import (
    API_VERSION,
    EMPTY_BODY_HASH,
    SUPPORTED_API_VERSIONS,
    AuthHeader,
    authorization_header,
    parse_authorization,
    parse_date,
    sign,
)
from wire._slots import Slots, SlotsError, format_bytes

__all__ = [
    "API_VERSION",
    "EMPTY_BODY_HASH",
    "SUPPORTED_API_VERSIONS",
    "AuthHeader",
    "CreateKernel",
    "DestroyKernel",
    "Execute",
    "GetLogs",
    "Heartbeat",
    "ImageInfo",
    "ImagesChanged",
    "Input",
    "KernelExited",
    "KernelInfo",
    "Message",
    "Register",
    "Reply",
    "RunOutput",
    "Slots",
    "SlotsError",
    "Upload",
    "UploadFile",
    "authorization_header",
    "decode",
    "encode",
    "format_bytes",
    "parse_authorization",
    "parse_date",
    "sign",
]
