"""Domain errors of the control plane.

Plain exceptions, not web-framework errors. Each names the problem type Backend.AI clients know
(docs/backendai-api.md §5); `api/problems.py` turns them into problem+json in one place.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ControlPlaneError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-server-error"
    title: ClassVar[str] = "Internal server error."

    def __init__(self, msg: str = "", data: Any = None) -> None:
        super().__init__(msg or self.title)
        self.msg = msg
        self.data = data


class InvalidAPIParams(ControlPlaneError):
    status, slug, title = 400, "invalid-api-params", "Missing or invalid API parameters."


class InvalidAuthParams(ControlPlaneError):
    status, slug, title = 400, "invalid-auth-params", "Missing or invalid authorization parameters."


class AuthFailed(ControlPlaneError):
    status, slug, title = 401, "auth-failed", "Credential/signature mismatch."


class GenericBadRequest(ControlPlaneError):
    status, slug, title = 400, "generic-bad-request", "Bad request."


class InsufficientPrivilege(ControlPlaneError):
    status, slug, title = 403, "insufficient-privilege", "Insufficient privilege."


class CSRFRefused(ControlPlaneError):
    """A web UI request that changes something without this sign-in's CSRF token."""

    status, slug, title = 403, "csrf-refused", "Refused: missing or wrong CSRF token."


class URLNotFound(ControlPlaneError):
    status, slug, title = 404, "url-not-found", "Unknown URL path."


class MethodNotAllowed(ControlPlaneError):
    status, slug, title = 405, "method-not-allowed", "Unsupported HTTP method."


class ObjectNotFound(ControlPlaneError):
    status, slug, title = 404, "object-not-found", "No such object."


class SessionNotFound(ObjectNotFound):
    title = "No such session."


class ImageNotFound(ObjectNotFound):
    title = "No such environment image."


class KeypairNotFound(ObjectNotFound):
    title = "No such keypair."


class SessionAlreadyExists(ControlPlaneError):
    status, slug, title = 400, "session-already-exists", "The session already exists."


class TooManySessionsMatched(ControlPlaneError):
    status, slug, title = 404, "too-many-sessions-matched", "Too many sessions matched."


class UnsatisfiableResources(ControlPlaneError):
    """No node of this cluster could ever host the request."""

    status, slug, title = 400, "invalid-api-params", "Missing or invalid API parameters."


class SessionNotRunning(ControlPlaneError):
    status, slug, title = 409, "session-not-running", "The session is not running."


class NodeUnavailable(ControlPlaneError):
    status, slug, title = 503, "instance-not-available", "No such instance or unavailable."


class NodeDisconnected(NodeUnavailable):
    """The link went down with the request sent: the node may have done it anyway."""


class ServiceBusy(ControlPlaneError):
    status, slug, title = 503, "service-unavailable", "Service unavailable."


class TooManyRequests(ControlPlaneError):
    status, slug, title = 429, "too-many-requests", "Too many requests."


class VFolderNotFound(ObjectNotFound):
    title = "No such virtual folder."


class VFolderAlreadyExists(ControlPlaneError):
    status, slug, title = 400, "vfolder-already-exists", "The virtual folder already exists."


class TooManyVFolders(ControlPlaneError):
    status, slug, title = 404, "too-many-vfolders", "Too many virtual folders matched."


class VFolderPermissionDenied(ControlPlaneError):
    status, slug, title = 403, "vfolder-permission-denied", "Not permitted on this virtual folder."


class VFolderInUse(ControlPlaneError):
    status, slug, title = 409, "vfolder-in-use", "The virtual folder is in use."


class VFolderQuotaExceeded(ControlPlaneError):
    status, slug, title = 413, "vfolder-quota-exceeded", "The virtual folder's quota is exceeded."


class StorageHostUnusable(ControlPlaneError):
    status, slug, title = 503, "storage-unavailable", "The storage host cannot be used."


class ScalingGroupNotFound(ObjectNotFound):
    title = "No such scaling group."
