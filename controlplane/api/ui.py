"""The web UI (docs/webui.md): server-rendered pages from webui/templates, made live with htmx
and server-sent events. This module: sign-in and out, the session pages and the assets; the
admin pages are in ui_admin.py.

Pages act through the same functions as the REST API (lifecycle, sessions), as the keypair
signed in (ui_auth.browser sets it, so `requester()` and `require_admin()` work as there).
A failure renders error.html with the problem's title and message and its status; a form's
own mistakes re-render the form with the message.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from quart import (
    Blueprint,
    Response,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from quart_schema import hide
from sqlalchemy import select

import webui
import wire
from controlplane import images as images_db
from controlplane import lifecycle, nodecalls, nodes, presets, vfolders
from controlplane import sessions as sessions_db
from controlplane.api import ui_auth
from controlplane.api._context import core, public, requester
from controlplane.api._session_models import CreateSession
from controlplane.api._typed import field_errors
from controlplane.api.ui_auth import SignInForm, browser, read_form
from controlplane.db.models import Kernel, Keypair, Session
from controlplane.errors import (
    ControlPlaneError,
    InvalidAPIParams,
    SessionNotRunning,
    TooManyRequests,
)
from controlplane.nodecalls import NodeRefused

bp = Blueprint("ui", __name__, template_folder=str(webui.TEMPLATES))


GONE = ("TERMINATED", "CANCELLED")


@bp.app_template_filter("slots")
def _slots(data: dict[str, Any] | None) -> str:
    """Resource slots as people read them: "cpu=1 mem=1 GiB"."""
    return wire.Slots.from_wire(data).describe()


@bp.app_template_filter("filesize")
def _filesize(size: int | None) -> str:
    return wire.format_bytes(size or 0)


class LaunchForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(min_length=1, max_length=256)
    name: str = Field(default="", max_length=64)
    preset: str = Field(default="", max_length=64)
    cpu: str = Field(default="", max_length=16)
    mem: str = Field(default="", max_length=16)
    gpu: str = Field(default="", max_length=16)
    gpu_slot: str = Field(default="", max_length=64)  # which accelerator slot `gpu` counts
    mount: list[str] = Field(default_factory=list, max_length=64)  # folder names

    @field_validator("mount", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    async def request(self) -> CreateSession:
        """The same request as POST /session, enqueued: the page shows it pending, then live.
        A preset gives the resources; the fields filled in replace its figures."""
        resources: dict[str, str] = {}
        if self.preset:
            async with core().db() as db:
                preset = await presets.get(db, self.preset)
            if preset is None:
                raise InvalidAPIParams(f"there is no preset {self.preset!r}")
            resources.update(preset.resource_slots)
        typed = [("cpu", self.cpu), ("mem", self.mem), (self.gpu_slot.strip(), self.gpu)]
        resources.update({k: v.strip() for k, v in typed if k and v.strip()})
        try:
            return CreateSession.model_validate(
                {
                    "image": self.image,
                    "name": self.name.strip() or None,
                    "enqueueOnly": True,
                    "reuseIfExists": False,
                    "config": {"resources": resources, "mounts": self.mount or None},
                }
            )
        except ValidationError as exc:
            wrong = "; ".join(f"{k}: {v}" for k, v in field_errors(exc).items())
            raise InvalidAPIParams(f"Please fix the form: {wrong}") from exc


async def page(template: str, status: int = 200, **context: Any) -> Response:
    """A full page as the signed-in keypair (or nobody, on the sign-in page)."""
    body = await render_template(template, me=g.get("keypair"), csrf=g.get("csrf", ""), **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


async def api(view: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    """A REST route's own function, below the layer that reads JSON and writes it, called as
    the keypair signed in: a page does exactly what the API does, with the same checks."""
    return await inspect.unwrap(view)(**kwargs)


async def problem_page(error: ControlPlaneError) -> Response:
    problem = {"title": error.title, "msg": error.msg}
    return await page("error.html", error.status, problem=problem, code=error.status)


bp.register_error_handler(ControlPlaneError, problem_page)


# --- assets and signing in ------------------------------------------------------------------------


@bp.get("/ui/static/<path:name>")
@hide
@public
async def static(name: str) -> Response:
    """The UI's own stylesheet and the vendored scripts (webui/static)."""
    response = await send_from_directory(webui.STATIC, name)
    response.cache_control.max_age = 3600
    return response


@bp.get("/ui/")
@hide
@browser
async def home() -> Response:
    return redirect(url_for("ui.sessions"), 303)  # type: ignore[return-value]


@bp.get("/ui/sign-in")
@hide
@public
async def sign_in_form() -> Response:
    return await _sign_in_page()


async def _sign_in_page(
    problem: dict[str, str] | None = None, form: SignInForm | None = None, status: int = 401
) -> Response:
    token = secrets.token_urlsafe(32)
    response = await page(
        "sign_in.html",
        status if problem else 200,
        signin_csrf=token,
        problem=problem,
        form=form or SignInForm(),
    )
    ui_auth.set_cookie(response, ui_auth.SIGN_IN_COOKIE, token, strict=True)
    return response


@bp.post("/ui/sign-in")
@hide
@public
async def sign_in() -> Response:
    await ui_auth.check_csrf(request.cookies.get(ui_auth.SIGN_IN_COOKIE, ""))
    data = await read_form(SignInForm)
    kept = SignInForm(email=data.email, access_key=data.access_key)  # never a secret
    try:
        keypair = await ui_auth.check_credentials(data)
    except TooManyRequests as exc:
        problem = {"title": "Too many failed sign-ins", "msg": exc.msg}
        return await _sign_in_page(problem, kept, exc.status)
    if keypair is None:
        wrong = (
            "The e-mail or the password is wrong."
            if data.with_password
            else ("The access key or the secret key is wrong.")
        )
        return await _sign_in_page({"title": "Sign-in failed", "msg": wrong}, kept)
    response: Response = redirect(url_for("ui.sessions"), 303)  # type: ignore[assignment]
    ui_auth.set_cookie(response, ui_auth.COOKIE, ui_auth.store().open(keypair.access_key))
    response.delete_cookie(ui_auth.SIGN_IN_COOKIE, path=ui_auth.COOKIE_PATH)
    return response


@bp.post("/ui/sign-out")
@hide
@browser
async def sign_out() -> Response:
    ui_auth.store().close(request.cookies.get(ui_auth.COOKIE, ""))
    response: Response = redirect(url_for("ui.sign_in_form"), 303)  # type: ignore[assignment]
    response.delete_cookie(ui_auth.COOKIE, path=ui_auth.COOKIE_PATH)
    return response


# --- sessions -------------------------------------------------------------------------------------


# The keypair is passed in: `requester()` (flask's `g`) is gone by the time an event stream
# renders again.
async def mine(me: Keypair) -> list[Session]:
    async with core().db() as db:
        return await sessions_db.list_for(db, me, include_dead=False)


async def find(ref: str, me: Keypair) -> Session:
    """The caller's own session (another's is a 404, as in the API)."""
    async with core().db() as db:
        return await sessions_db.find(db, me, ref)


@bp.get("/ui/sessions")
@hide
@browser
async def sessions() -> Response:
    return await page("sessions.html", active="sessions", sessions=await mine(requester()))


@bp.get("/ui/sessions/new")
@hide
@browser
async def launch_form() -> Response:
    return await _launch_page(LaunchForm(image="python"))


async def _launch_page(form: LaunchForm, problem: dict[str, str] | None = None) -> Response:
    the_core = core()
    async with the_core.db() as db:
        found = await images_db.list_images(db)
        fit = await presets.check(db, requester(), the_core.hub.connected())
        offered = await nodes.list_nodes(db, the_core.hub.connected())
        folders = await vfolders.accessible(db, requester().user)
    choices = sorted({a for i in found for a in i.aliases} | {i.name for i in found if i.nodes})
    # the accelerator slots some node offers (cuda.device, cuda.shares, ...)
    gpu_slots = sorted({k for n in offered for k in n.available_slots if k not in ("cpu", "mem")})
    return await page(
        "launch.html",
        400 if problem else 200,
        active="sessions",
        images=choices,
        presets=fit.presets,
        gpu_slots=gpu_slots,
        folders=[a.folder.name for a in folders],
        form=form,
        problem=problem,
    )


@bp.post("/ui/sessions")
@hide
@browser
async def launch() -> Response:
    form = await read_form(LaunchForm)
    try:
        params = (await form.request()).params()
        session, _ = await lifecycle.create_session(core(), requester(), params)
    except ControlPlaneError as exc:
        return await _launch_page(form, {"title": "The session was not launched", "msg": exc.msg})
    return redirect(url_for("ui.session_page", ref=str(session.id)), 303)  # type: ignore[return-value]


@bp.get("/ui/sessions/<ref>")
@hide
@browser
async def session_page(ref: str) -> Response:
    return await page("session.html", active="sessions", session=await find(ref, requester()))


@bp.get("/ui/sessions/<ref>/logs")
@hide
@browser
async def session_logs(ref: str) -> Response:
    """The logs as a fragment (the detail page loads it, and again on demand)."""
    session = await find(ref, requester())
    async with core().db() as db:
        kernel = await db.scalar(select(Kernel).where(Kernel.session_id == session.id))
    problem = None
    logs = ""
    if kernel is not None and kernel.node_id is not None and kernel.status != "TERMINATED":
        try:
            logs = await nodecalls.get_logs(core().hub, kernel.node_id, str(kernel.id))
        except (NodeRefused, SessionNotRunning) as exc:
            problem = {"title": "Cannot read the logs", "msg": str(exc)}
    elif kernel is not None and kernel.logs is not None:
        logs = kernel.logs
    else:
        problem = {"title": "No logs yet", "msg": f"{session.name} has no container yet."}
    body = await render_template("_logs.html", logs=logs, problem=problem)
    return Response(body, content_type="text/html; charset=utf-8")


@bp.post("/ui/sessions/<ref>/destroy")
@hide
@browser
async def destroy(ref: str) -> Response:
    session = await find(ref, requester())
    if session.status not in GONE:
        await lifecycle.destroy_session(core(), session)
    return redirect(url_for("ui.session_page", ref=str(session.id)), 303)  # type: ignore[return-value]
