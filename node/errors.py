"""The node's own errors. Adapters (the container runtime) re-raise library errors as these, and
the agent turns them into a `Reply(ok=False, error=str(exc))`, so every message is written for a
person reading it in a CLI or the web UI."""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error the node reports; str(exc) is the message for a person."""


class RuntimeUnavailable(NodeError):
    """The container engine cannot be reached or answered with an unexpected error."""


class ImageNotFound(NodeError):
    """The image a kernel asks for is not present on this node."""


class ContainerNotFound(NodeError):
    """The container is gone (removed, or never existed)."""


class KernelNotFound(NodeError):
    """No kernel with this id runs on this node."""


class KernelStartFailed(NodeError):
    """The kernel's container was created but its runner never became ready."""


class UploadRejected(NodeError):
    """An upload names a path outside the kernel's work directory or carries bad data."""


class ControlPlaneUnreachable(NodeError):
    """The control plane cannot be dialled, or refused the node's handshake."""
