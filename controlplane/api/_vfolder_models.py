"""The /folders routes' bodies and answers, as Backend.AI's manager has them
(docs/backendai-api.md §6.3, §12)."""

from __future__ import annotations

import json
import re
import stat
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, RootModel, StrictBool

from controlplane.api._typed import CompatRequest
from controlplane.db.models import VFolder
from controlplane.vfolders import Access, fs

Permission = Literal["ro", "rw", "wd"]
UsageMode = Literal["general", "data", "model"]
SIZE_RE = re.compile(r"^(\d+(?:\.\d*)?)\s*([kmgtpe]?)i?b?$", re.IGNORECASE)
Path = Annotated[str, Field(max_length=fs.MAX_PATH)]


def parse_size(value: str | int | None) -> int | None:
    """A binary size ("10g", "512m", "0") in bytes; None or 0: no limit."""
    if value is None:
        return None
    match = SIZE_RE.match(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size such as 512m or 10g")
    number, unit = match.groups()
    size = int(float(number) * 1024 ** " kmgtpe".index(unit.lower() or " "))
    return size or None


def _alias(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class Raw(BaseModel):
    """A reply sent as its fields' own names (snake_case, as the manager's)."""

    model_config = ConfigDict(serialize_by_alias=False)


class Empty(Raw):
    pass


class CreateFolder(CompatRequest):
    name: str = Field(min_length=1, max_length=64)
    host: str | None = Field(default=None, max_length=128)
    group: str | None = _alias("group", "groupId", "group_id")
    usage_mode: UsageMode = "general"
    permission: Permission = "rw"
    quota: str | int | None = None
    cloneable: StrictBool = False
    unmanaged_path: str | None = _alias("unmanaged_path", "unmanagedPath")


class FolderCreated(Raw):
    id: str
    name: str
    quota_scope_id: str
    host: str
    usage_mode: str
    permission: str
    max_size: int | None  # MiB
    creator: str
    ownership_type: str
    user: str | None
    group: str | None
    cloneable: bool
    status: str

    @classmethod
    def of(cls, folder: VFolder) -> FolderCreated:
        return cls(
            id=folder.id.hex,
            name=folder.name,
            quota_scope_id=_scope(folder),
            host=folder.host,
            usage_mode=folder.usage_mode,
            permission=folder.permission,
            max_size=folder.max_size // 2**20 if folder.max_size else None,
            creator=folder.creator,
            ownership_type=folder.ownership_type,
            user=str(folder.user_id) if folder.user_id else None,
            group=str(folder.project_id) if folder.project_id else None,
            cloneable=folder.cloneable,
            status=folder.status,
        )


def _scope(folder: VFolder) -> str:
    return f"project:{folder.project_id}" if folder.project_id else f"user:{folder.user_id}"


class FolderItem(Raw):
    """An item of GET /folders (the SDK's VFolder.list)."""

    name: str
    id: str
    quota_scope_id: str
    host: str
    status: str
    usage_mode: str
    created_at: str
    is_owner: bool
    permission: str
    user: str | None
    group: str | None
    creator: str
    user_email: str | None
    group_name: str | None
    ownership_type: str
    type: str
    cloneable: bool
    max_files: int
    max_size: int | None
    cur_size: int

    @classmethod
    def of(cls, access: Access, cur_size: int = 0) -> FolderItem:
        folder = access.folder
        return cls(
            name=folder.name,
            id=folder.id.hex,
            quota_scope_id=_scope(folder),
            host=folder.host,
            status=folder.status,
            usage_mode=folder.usage_mode,
            created_at=str(folder.created_at),
            is_owner=access.is_owner,
            permission=access.permission,
            user=str(folder.user_id) if folder.user_id else None,
            group=str(folder.project_id) if folder.project_id else None,
            creator=folder.creator,
            user_email=folder.creator if folder.user_id else None,
            group_name=None,
            ownership_type=folder.ownership_type,
            type=folder.ownership_type,
            cloneable=folder.cloneable,
            max_files=0,
            max_size=folder.max_size // 2**20 if folder.max_size else None,
            cur_size=cur_size,
        )


class FolderList(RootModel[list[FolderItem]]):
    pass


class FolderInfo(FolderItem):
    """GET /folders/<name>: the list item plus its usage."""

    num_files: int
    numFiles: int
    used_bytes: int
    created: str
    last_used: str | None


class HostInfo(Raw):
    backend: str
    capabilities: list[str]
    quota_mode: str  # "project": the kernel enforces sizes; "accounted": only the API does
    quota_mode_reason: str | None = None  # why "accounted"
    project_quota_capable: bool
    usage: dict[str, int]
    sftp_scaling_groups: list[str] = []


class HostsView(Raw):
    default: str | None
    allowed: list[str]
    volume_info: dict[str, HostInfo]


class AllHostsView(Raw):
    default: str | None
    allowed: list[str]


class TypeList(RootModel[list[str]]):
    pass


class RenameFolder(CompatRequest):
    new_name: str = Field(min_length=1, max_length=64)


class CloneFolder(CompatRequest):
    target_name: str = Field(min_length=1, max_length=64)
    target_host: str | None = None
    usage_mode: UsageMode = "general"
    permission: Permission = "rw"
    cloneable: StrictBool = False


class TrashItem(Raw):
    id: str
    name: str
    host: str
    ownership_type: str
    creator: str
    deleted_at: str | None


class TrashList(Raw):
    items: list[TrashItem]


# --- sharing ------------------------------------------------------------------------------------


class Invite(CompatRequest):
    perm: Permission = "rw"
    user_ids: list[Annotated[str, Field(max_length=256)]] = Field(
        validation_alias=AliasChoices("user_ids", "userIDs", "emails"), max_length=100
    )


class Invited(Raw):
    invited_ids: list[str]


class InvitationItem(Raw):
    id: str
    inviter: str
    invitee: str
    perm: str
    state: str
    created_at: str
    modified_at: str
    vfolder_id: str
    vfolder_name: str


class Invitations(Raw):
    invitations: list[InvitationItem]


class InvitationRef(CompatRequest):
    inv_id: str = Field(max_length=64)


class Share(CompatRequest):
    permission: Permission = "rw"
    emails: list[Annotated[str, Field(max_length=256)]] = Field(max_length=100)


class Shared(Raw):
    shared_emails: list[str]


class Unshare(CompatRequest):
    emails: list[Annotated[str, Field(max_length=256)]] = Field(max_length=100)


class Unshared(Raw):
    unshared_emails: list[str]


class Leave(CompatRequest):
    shared_user_uuid: str | None = None


class Left(Raw):
    msg: str


# --- files --------------------------------------------------------------------------------------


class ListFiles(CompatRequest):
    path: Path = "."


class FileItem(Raw):
    name: str
    type: str
    size: int
    mode: str
    created: str
    modified: str


class FileList(Raw):
    items: list[FileItem]
    files: str  # the same entries, JSON-encoded, as the official CLI reads them

    @classmethod
    def of(cls, entries: list[fs.Entry]) -> FileList:
        def iso(t: float) -> str:
            return datetime.fromtimestamp(t).astimezone().isoformat()

        items = [
            FileItem(
                name=e.name,
                type=e.type,
                size=e.size,
                mode=stat.filemode(e.mode),
                created=iso(e.ctime),
                modified=iso(e.mtime),
            )
            for e in entries
        ]
        files = [
            {
                "filename": e.name,
                "size": e.size,
                "mode": stat.filemode(e.mode),
                "ctime": e.ctime,
                "atime": e.atime,
                "mtime": e.mtime,
            }
            for e in entries
        ]
        return cls(items=items, files=json.dumps(files))


class MakeDir(CompatRequest):
    path: Path | list[Path]
    parents: StrictBool = False
    exist_ok: StrictBool = False


class RenameFile(CompatRequest):
    target_path: Path
    new_name: str = Field(min_length=1, max_length=255)


class MoveFile(CompatRequest):
    src: Path
    dst: Path


class DeleteFiles(CompatRequest):
    files: list[Path] = Field(min_length=1, max_length=1000)
    recursive: StrictBool = False


class RequestUpload(CompatRequest):
    path: Path
    size: int = Field(ge=0, le=2**50)


class RequestDownload(CompatRequest):
    path: Path | None = _alias("path", "file")
    archive: StrictBool = False


class TransferGranted(Raw):
    token: str
    url: str


class TokenQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(default="", max_length=4096)  # none: 401 like a wrong one
    dst_dir: str | None = Field(default=None, max_length=fs.MAX_PATH)
