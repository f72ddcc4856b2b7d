"""The errors the SDK raises. Each one's `str()` is a single line meant for a person."""

from __future__ import annotations

TYPE_CHECKING = False  # the fast `shipyard run` imports this: typing costs start-up time
if TYPE_CHECKING:
    from typing import Any

GENERIC_ERROR = "https://api.backend.ai/probs/generic-error"


class ClientError(Exception):
    """Base of every SDK error; also raised on its own when the control plane cannot be reached."""


class ConnectFailed(ClientError):
    """The control plane could not be reached at all, so the request was never sent."""


class ConfigError(ClientError):
    """The client has no (or a malformed) endpoint or keypair configured."""


class APIError(ClientError):
    """A non-2xx answer, read from its application/problem+json body (docs/backendai-api.md §5)."""

    def __init__(self, status: int, type: str, title: str, msg: str = "", data: Any = None) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.msg = msg
        self.data = data
        super().__init__(str(self))

    @property
    def slug(self) -> str:
        """The last part of `type`, e.g. "object-not-found"."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def from_response(cls, status: int, reason: str, body: bytes) -> APIError:
        """Parse a problem+json body; anything else becomes a generic error quoting the body."""
        import json  # not at the top: the fast `shipyard run` imports json after its first request

        try:
            problem = json.loads(body)
        except ValueError:
            problem = None
        if not isinstance(problem, dict) or "title" not in problem:
            text = " ".join(body.decode(errors="replace").split())
            return cls(status, GENERIC_ERROR, reason or "Error", text[:200])
        return cls(
            status,
            str(problem.get("type", GENERIC_ERROR)),
            str(problem["title"]),
            str(problem.get("msg") or ""),
            problem.get("data"),
        )

    def __str__(self) -> str:
        text = f"{self.title} ({self.status})"
        if self.msg:
            text += f": {self.msg}"
        if self.slug == "invalid-api-params" and isinstance(self.data, dict) and self.data:
            # trafaret-style per-field messages: say which field is wrong
            text += " [" + "; ".join(f"{k}: {v}" for k, v in self.data.items()) + "]"
        return text
