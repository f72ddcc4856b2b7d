"""Request and response models of the app routes (docs/backendai-api.md §10)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import AliasChoices, Field, RootModel, field_validator

from controlplane.api._session_models import OwnerQuery, ServicePortView


class AppView(ServicePortView):
    """One app as `/apps` lists it to the session's owner: an HTTP app has the URL to open
    (with the session's app token), which the official client fills in with its local address."""

    url_template: str | None = Field(
        default=None,
        alias="url_template",
        exclude_if=lambda value: value is None,  # the client checks for the key, not its value
        description="http apps: {host} and {port} are the local tunnel's",
    )


class AppList(RootModel[list[AppView]]):
    """GET /stream/session/<ref>/apps: a bare list, as the official client reads it."""


def _json_object(value: Any) -> Any:
    """`arguments` and `envs` arrive as JSON text in the query string (§10.3)."""
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"must be a JSON object: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object")
    return parsed


class ProxyQuery(OwnerQuery):
    app: str = Field(min_length=1, max_length=64, validation_alias=AliasChoices("app", "service"))
    port: int | None = Field(
        default=None, ge=1024, le=65535, description="one of the app's ports (default: its first)"
    )
    arguments: dict[str, Any] | None = Field(default=None, description="JSON; apps take none yet")
    envs: dict[str, Any] | None = Field(default=None, description="JSON; apps take none yet")

    _decode = field_validator("arguments", "envs", mode="before")(_json_object)


class PtyQuery(OwnerQuery):
    rows: int = Field(default=24, ge=1, le=9999, description="the terminal's first size")
    cols: int = Field(default=80, ge=1, le=9999)
