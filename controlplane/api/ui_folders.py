"""The web UI's folders (docs/webui.md): list, create and delete folders, share them by
invitation, browse one, upload and download files. Every action is the /folders route's own
function (`ui.api`), so the owner scoping, permissions and path checks are the API's.

Files never pass through a page: for an upload the page asks for the API's tus ticket
(`POST .../uploads`, answered as JSON) and the browser sends the bytes to the tus URL itself,
in chunks, resuming from the server's offset (webui/static/folders.js); a download is a
redirect to the API's token URL.
"""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify, redirect, request, url_for
from quart_schema import hide

from controlplane.api import vfolder_files, vfolder_sharing, vfolders
from controlplane.api._context import core, requester
from controlplane.api._typed import validate
from controlplane.api._vfolder_models import (
    CreateFolder,
    DeleteFiles,
    FileList,
    FolderList,
    InvitationRef,
    Invitations,
    Invite,
    ListFiles,
    MakeDir,
    RequestDownload,
    RequestUpload,
    TransferGranted,
)
from controlplane.api.ui import api, page, problem_page
from controlplane.api.ui_auth import browser, read_form
from controlplane.errors import ControlPlaneError, ObjectNotFound

bp = Blueprint("ui_folders", __name__)
bp.register_error_handler(ControlPlaneError, problem_page)


class NewFolder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    host: str = Field(default="", max_length=128)


class PathForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096)


class UploadForm(PathForm):
    size: int = Field(ge=0, le=2**50)


class InviteForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=256)
    permission: str = Field(default="ro", max_length=2)


class NewDir(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str = Field(default="", max_length=4096)
    name: str = Field(min_length=1, max_length=255)


def _inside(base: str, name: str) -> str:
    return f"{base.strip('/')}/{name}" if base.strip("/") else name


async def _folders_page(problem: dict[str, str] | None = None, name: str = "") -> Response:
    folders: FolderList = await api(vfolders.list_folders)
    invitations: Invitations = await api(vfolder_sharing.list_invitations)
    me = requester().user.email
    hosts = core().vfolder_hosts
    return await page(
        "folders.html",
        400 if problem else 200,
        active="folders",
        folders=folders.root,
        invitations=[i for i in invitations.invitations if i.invitee == me],
        hosts=hosts.names(),
        default_host=hosts.default,
        problem=problem,
        name=name,
    )


@bp.get("/ui/folders")
@hide
@browser
async def folders_page() -> Response:
    return await _folders_page()


@bp.post("/ui/folders")
@hide
@browser
async def create_folder() -> Response:
    form = await read_form(NewFolder)
    try:
        data = validate(CreateFolder, {"name": form.name.strip(), "host": form.host or None})
        await api(vfolders.create_folder, data=data)
    except ControlPlaneError as exc:
        return await _folders_page(
            {"title": "The folder was not created", "msg": exc.msg}, form.name
        )
    return redirect(url_for("ui_folders.folder_page", name=data.name), 303)  # type: ignore[return-value]


@bp.post("/ui/folders/<name>/delete")
@hide
@browser
async def delete_folder(name: str) -> Response:
    """Move the folder to the trash (the API's DELETE /folders/<name>)."""
    await api(vfolders.delete_folder, name=name)
    return redirect(url_for("ui_folders.folders_page"), 303)  # type: ignore[return-value]


@bp.post("/ui/folders/<name>/invite")
@hide
@browser
async def invite(name: str) -> Response:
    """Invite someone to one's own folder (they accept it on their folders page)."""
    form = await read_form(InviteForm)
    data = validate(Invite, {"user_ids": [form.email.strip()], "perm": form.permission})
    try:
        await api(vfolder_sharing.invite, name=name, data=data)
    except ControlPlaneError as exc:
        return await _folder_page(name, {"title": "Nobody was invited", "msg": exc.msg})
    return await _folder_page(name, shared_with=form.email.strip())


@bp.post("/ui/folders/invitations/<inv_id>/<answer>")
@hide
@browser
async def answer_invitation(inv_id: str, answer: str) -> Response:
    """Accept or decline an invitation to a folder."""
    views = {
        "accept": vfolder_sharing.accept_invitation,
        "decline": vfolder_sharing.delete_invitation,
    }
    if answer not in views:
        raise ObjectNotFound(f"an invitation is answered with accept or decline, not {answer!r}")
    await api(views[answer], data=validate(InvitationRef, {"inv_id": inv_id}))
    return redirect(url_for("ui_folders.folders_page"), 303)  # type: ignore[return-value]


@bp.get("/ui/folders/<name>")
@hide
@browser
async def folder_page(name: str) -> Response:
    """The entries of one folder at `?path=` (its top by default)."""
    return await _folder_page(name)


async def _folder_page(
    name: str, problem: dict[str, str] | None = None, shared_with: str = ""
) -> Response:
    path = request.args.get("path", "").strip("/")
    listed: FileList = await api(
        vfolder_files.list_files, name=name, data=validate(ListFiles, {"path": path or "."})
    )
    entries = sorted(listed.items, key=lambda e: (e.type != "DIRECTORY", e.name))
    crumbs: list[tuple[str, str]] = []  # (name, path) of each folder above
    for part in path.split("/") if path else []:
        crumbs.append((part, _inside(crumbs[-1][1], part) if crumbs else part))
    return await page(
        "folder.html",
        400 if problem else 200,
        active="folders",
        folder=name,
        path=path,
        entries=entries,
        crumbs=crumbs,
        problem=problem,
        shared_with=shared_with,
    )


@bp.post("/ui/folders/<name>/mkdir")
@hide
@browser
async def make_dir(name: str) -> Response:
    form = await read_form(NewDir)
    data = validate(MakeDir, {"path": _inside(form.base, form.name.strip())})
    await api(vfolder_files.make_dir, name=name, data=data)
    return redirect(url_for("ui_folders.folder_page", name=name, path=form.base), 303)  # type: ignore[return-value]


@bp.post("/ui/folders/<name>/delete-file")
@hide
@browser
async def delete_file(name: str) -> Response:
    form = await read_form(PathForm)
    data = validate(DeleteFiles, {"files": [form.path], "recursive": True})
    await api(vfolder_files.delete_files, name=name, data=data)
    parent = form.path.strip("/").rpartition("/")[0]
    return redirect(url_for("ui_folders.folder_page", name=name, path=parent), 303)  # type: ignore[return-value]


@bp.post("/ui/folders/<name>/uploads")
@hide
@browser
async def upload_ticket(name: str) -> Response:
    """The API's tus ticket for one file (JSON `{"url"}`: the tus URL with its token)."""
    form = await read_form(UploadForm)
    data = validate(RequestUpload, {"path": form.path, "size": form.size})
    granted: TransferGranted = await api(vfolder_files.request_upload, name=name, data=data)
    return jsonify({"url": f"{vfolder_files.UPLOAD_URL}?{urlencode({'token': granted.token})}"})


@bp.get("/ui/folders/<name>/download")
@hide
@browser
async def download(name: str) -> Response:
    data = validate(RequestDownload, {"path": request.args.get("path", "")})
    granted: TransferGranted = await api(vfolder_files.request_download, name=name, data=data)
    target = f"{vfolder_files.DOWNLOAD_URL}?{urlencode({'token': granted.token})}"
    return redirect(target, 303)  # type: ignore[return-value]
