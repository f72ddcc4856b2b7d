"""What a handler may ask of the request it serves: the Core, the keypair that signed the call,
an admin check, and the mark for routes that need no signature.

Blueprints import this module, never `app.py` (which imports the blueprints to wire them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from quart import current_app, g

from controlplane.core import Core
from controlplane.db.models import Keypair
from controlplane.errors import InsufficientPrivilege

F = TypeVar("F", bound=Callable[..., Any])
CORE_KEY = "shipyard.core"


def public(view: F) -> F:
    """Mark a view that needs no signature (the version probe, health, the API's own
    description, node dial-in)."""
    view._shipyard_public = True  # type: ignore[attr-defined]
    return view


def is_public(view: Callable[..., Any] | None) -> bool:
    """Whether a call to `view` goes unsigned; None (no route matched) too, so that an unknown
    path is a 404 rather than a demand for a signature."""
    return view is None or bool(getattr(view, "_shipyard_public", False))


def is_browser(view: Callable[..., Any] | None) -> bool:
    """Whether `view` is a web UI route, which a browser's session cookie authenticates instead
    of a signature (controlplane/api/ui_auth.py)."""
    return bool(getattr(view, "_shipyard_browser", False))


def core() -> Core:
    return cast(Core, current_app.extensions[CORE_KEY])


def requester() -> Keypair:
    return cast(Keypair, g.keypair)


def require_admin() -> Keypair:
    keypair = requester()
    if not keypair.is_admin:
        raise InsufficientPrivilege("this needs an admin keypair")
    return keypair


def require_superadmin() -> Keypair:
    """An admin keypair of a superadmin: what spans domains (nodes, pools) needs one."""
    admin = require_admin()
    if admin.user.role != "superadmin":
        raise InsufficientPrivilege("this needs a superadmin")
    return admin
