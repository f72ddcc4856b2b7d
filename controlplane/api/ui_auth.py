"""Signing in to the web UI: a server-side session behind an HttpOnly cookie, and a CSRF token
on every state-changing request.

The cookie holds only a random id; the server keeps, under the id's SHA-256, which keypair
signed in and the session's CSRF token. They live in this process's memory, so a restart of
the control plane signs everyone out (the next page asks to sign in again). The cookie's path
is /ui and the HMAC API never reads it, so it authenticates the UI's own routes only; those
check the CSRF token (a form field or the X-CSRF-Token header htmx sends) on every method but
GET. The sign-in form, sent before there is a session, carries a token that must match a
cookie set with the form (double submit), so another site cannot sign a browser in either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Response, current_app, g, redirect, request, url_for

from controlplane import keypairs, users
from controlplane.api._context import core
from controlplane.api._typed import field_errors
from controlplane.db.models import Keypair
from controlplane.errors import AuthFailed, CSRFRefused, InvalidAPIParams

COOKIE = "shipyard_ui"
SIGN_IN_COOKIE = "shipyard_ui_sign_in"
COOKIE_PATH = "/ui"
IDLE_SECONDS = 8 * 3600  # a session unused this long is forgotten
STORE_KEY = "shipyard.ui_sessions"
SAFE_METHODS = ("GET", "HEAD")
M = TypeVar("M", bound=BaseModel)
V = Callable[..., Awaitable[Any]]


@dataclass
class BrowserSession:
    access_key: str
    csrf: str
    last_seen: float


class BrowserSessions:
    """The signed-in browsers of this control plane, by the SHA-256 of their cookie."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._idle = idle_seconds
        self._by_hash: dict[str, BrowserSession] = {}

    @staticmethod
    def _key(cookie: str) -> str:
        return hashlib.sha256(cookie.encode()).hexdigest()

    def open(self, access_key: str) -> str:
        """A new session for `access_key`; returns the cookie's value."""
        now = time.monotonic()
        self._by_hash = {k: s for k, s in self._by_hash.items() if now - s.last_seen < self._idle}
        cookie = secrets.token_urlsafe(32)
        self._by_hash[self._key(cookie)] = BrowserSession(
            access_key, secrets.token_urlsafe(32), now
        )
        return cookie

    def get(self, cookie: str, *, touch: bool = True) -> BrowserSession | None:
        """The session, if still open; `touch` counts this as activity (an open event stream
        does not, so a page left open still signs out after the idle time)."""
        found = self._by_hash.get(self._key(cookie))
        now = time.monotonic()
        if found is None or now - found.last_seen >= self._idle:
            return None
        if touch:
            found.last_seen = now
        return found

    def close(self, cookie: str) -> None:
        self._by_hash.pop(self._key(cookie), None)


def store() -> BrowserSessions:
    return cast(BrowserSessions, current_app.extensions[STORE_KEY])


class SignInForm(BaseModel):
    """Either e-mail and password or, as the alternative, an access key and its secret key."""

    model_config = ConfigDict(extra="forbid")
    email: str = Field(default="", max_length=256)
    password: str = Field(default="", max_length=1024)
    access_key: str = Field(default="", max_length=64)
    secret_key: str = Field(default="", max_length=256)

    @property
    def with_password(self) -> bool:
        return bool(self.email or self.password)


async def check_credentials(form: SignInForm) -> Keypair | None:
    """The one sign-in check: the active keypair the credentials belong to, else None (the
    caller says only that sign-in failed). With a password: the user's main keypair, as POST
    /auth/authorize answers, under the same limit on failed attempts (TooManyRequests)."""
    async with core().db() as db:
        if form.with_password:
            g.sign_in_email = form.email  # who tried, for the audit log
            try:
                return await users.sign_in(
                    db,
                    core().sign_ins,
                    email=form.email,
                    password=form.password,
                    domain_name=None,
                    addr=request.remote_addr or "",
                    now=datetime.now(UTC),
                )
            except AuthFailed:
                return None
        keypair = await keypairs.get_active(db, form.access_key.strip())
        # compare even for an unknown key, so the time taken does not tell which part was wrong
        box = core().secrets
        expected = keypairs.secret_key(box, keypair) if keypair is not None else secrets.token_hex()
        if hmac.compare_digest(expected.encode(), form.secret_key.strip().encode()) and keypair:
            return keypair
        return None


def set_cookie(response: Response, name: str, value: str, *, strict: bool = False) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        secure=request.scheme == "https",
        samesite="Strict" if strict else "Lax",
    )


def to_sign_in() -> Response:
    """Send a browser that is not signed in to the sign-in page (htmx: a full navigation)."""
    target = url_for("ui.sign_in_form")
    if request.headers.get("HX-Request"):
        return Response(status=401, headers={"HX-Redirect": target})
    return cast(Response, redirect(target, 303))


async def check_csrf(expected: str) -> None:
    sent = request.headers.get("X-CSRF-Token") or (await request.form).get("csrf_token", "")
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CSRFRefused(
            "The form was stale or did not come from this site: reload the page and try again."
        )


async def read_form(model: type[M]) -> M:
    """The request's form fields as `model`; a readable InvalidAPIParams saying what to fix."""
    form = await request.form
    # a field sent more than once (checkboxes) is a list
    fields = {k: vs if len(vs) > 1 else vs[0] for k, vs in form.lists() if k != "csrf_token"}
    return form_as(model, fields)


def form_as(model: type[M], fields: Any) -> M:
    """`fields` as `model` (a form's, or an API request made from one); a readable
    InvalidAPIParams saying which field to fix."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        wrong = "; ".join(f"{k}: {v}" for k, v in field_errors(exc).items())
        raise InvalidAPIParams(f"Please fix the form: {wrong}") from exc


def browser(view: V) -> V:
    """A UI route: the HMAC check is skipped (app.py); the browser's session cookie names the
    keypair (`requester()` works as in the API), and every method but GET needs the CSRF
    token. Without a session the browser is sent to sign in."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        cookie = request.cookies.get(COOKIE, "")
        signed = store().get(cookie) if cookie else None
        keypair = None
        if signed is not None:
            async with core().db() as db:
                keypair = await keypairs.get_active(db, signed.access_key)
        if signed is None or keypair is None:
            return to_sign_in()
        if request.method not in SAFE_METHODS:
            await check_csrf(signed.csrf)
        g.keypair = keypair
        g.csrf = signed.csrf
        return await view(*args, **kwargs)

    wrapper._shipyard_browser = True  # type: ignore[attr-defined]
    return cast(V, wrapper)
