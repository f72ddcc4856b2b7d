"""The web UI's resource policies and resource presets pages (docs/webui.md).

Policies: list, create and edit their limits, through controlplane/policies.py's `create` and
`modify` as GraphQL's create/modify_keypair_resource_policy do: superadmins only, as there,
since a policy spans domains.
Presets: list, create and delete through the REST routes' own functions (POST/DELETE
/admin/presets, superadmin). Slot amounts are typed as people write them: `cpu=4 mem=16g`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, redirect, url_for
from quart_schema import hide
from sqlalchemy import select

import wire
from controlplane import policies
from controlplane.api import tenancy as tenancy_api
from controlplane.api._context import core, require_superadmin
from controlplane.api._tenancy_models import CreatePreset, PresetList
from controlplane.api.ui import api, page, problem_page
from controlplane.api.ui_auth import browser, form_as, read_form
from controlplane.db.models import ResourcePolicy
from controlplane.errors import ControlPlaneError, InvalidAPIParams, ObjectNotFound

bp = Blueprint("ui_limits", __name__)
bp.register_error_handler(ControlPlaneError, problem_page)

GiB, MiB = 2**30, 2**20
# the policy form's whole-number fields, with their labels (controlplane/policies.py)
COUNTS = {
    "max_concurrent_sessions": "Sessions at once",
    "max_containers_per_session": "Containers per session",
    "max_session_lifetime": "Session lifetime (seconds)",
    "idle_timeout": "Idle timeout (seconds)",
    "utilization_window": "Utilization window (seconds)",
    "min_cpu_util_pct": "Least CPU use in the window (%)",
    "min_gpu_util_pct": "Least GPU use in the window (%)",
    "max_vfolder_count": "Folders",
}


def size_text(n: int | str) -> str:
    """Bytes as the forms take them back exactly: 17179869184 -> "16g"."""
    n = int(n)
    if n and n % GiB == 0:
        return f"{n // GiB}g"
    return f"{n // MiB}m" if n and n % MiB == 0 else str(n)


@bp.app_template_filter("slots_text")
def slots_text(data: dict[str, Any] | None) -> str:
    return " ".join(
        f"{k}={size_text(v) if k == 'mem' else v}" for k, v in sorted((data or {}).items())
    )


def parse_slots(text: str) -> dict[str, str]:
    """`cpu=4 mem=16g` (spaces or commas between) as a slot mapping."""
    pairs = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not all(re.fullmatch(r"[\w.-]+=\S+", p) for p in pairs):
        raise InvalidAPIParams("Write the resources as slot=amount pairs, e.g. cpu=4 mem=16g")
    return dict(p.split("=", 1) for p in pairs)


def _names(text: str) -> list[str] | None:
    """Comma-separated names; none: no restriction."""
    found = [n.strip() for n in text.split(",") if n.strip()]
    return found or None


class PolicyForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=64)
    total_resource_slots: str = Field(default="", max_length=1024)
    default_for_unspecified: Literal["UNLIMITED", "LIMITED"] = "UNLIMITED"
    max_concurrent_sessions: int = 0
    max_containers_per_session: int = 1
    max_session_lifetime: int = 0
    idle_timeout: int = 0
    utilization_window: int = 0
    min_cpu_util_pct: int = 0
    min_gpu_util_pct: int = 0
    max_vfolder_count: int = 0
    max_vfolder_size: str = Field(default="0", max_length=32)
    allowed_images: str = Field(default="", max_length=4096)
    allowed_scaling_groups: str = Field(default="", max_length=4096)

    @classmethod
    def of(cls, row: ResourcePolicy) -> PolicyForm:
        return cls(
            name=row.name,
            total_resource_slots=slots_text(row.total_resource_slots),
            default_for_unspecified=row.default_for_unspecified,  # type: ignore[arg-type]
            **{k: getattr(row, k) for k in COUNTS},
            max_vfolder_size=size_text(row.max_vfolder_size),
            allowed_images=", ".join(row.allowed_images or []),
            allowed_scaling_groups=", ".join(row.allowed_scaling_groups or []),
        )

    def props(self) -> dict[str, object]:
        """The fields as `policies.apply_props` takes them (it checks each)."""
        try:
            folder_size = wire.parse_size(self.max_vfolder_size.strip() or "0")
        except wire.SlotsError as exc:
            raise InvalidAPIParams(f"Largest folder: {exc}") from exc
        return {
            "total_resource_slots": parse_slots(self.total_resource_slots),
            "default_for_unspecified": self.default_for_unspecified,
            **{k: getattr(self, k) for k in COUNTS},
            "max_vfolder_size": folder_size,
            "allowed_images": _names(self.allowed_images),
            "allowed_scaling_groups": _names(self.allowed_scaling_groups),
        }


# --- resource policies ----------------------------------------------------------------------


async def _policies_page(
    problem: dict[str, str] | None = None, form: PolicyForm | None = None
) -> Response:
    async with core().db() as db:
        rows = list(await db.scalars(select(ResourcePolicy).order_by(ResourcePolicy.name)))
    return await page(
        "admin_policies.html",
        400 if problem else 200,
        active="policies",
        policies=rows,
        counts=COUNTS,
        form=form or PolicyForm(),
        problem=problem,
    )


@bp.get("/ui/admin/policies")
@hide
@browser
async def policies_page() -> Response:
    require_superadmin()  # policies span domains (as the GraphQL mutations)
    return await _policies_page()


@bp.post("/ui/admin/policies")
@hide
@browser
async def create_policy() -> Response:
    require_superadmin()  # policies span domains (as the GraphQL mutations)
    form = await read_form(PolicyForm)
    try:
        async with core().db() as db:
            await policies.create(db, form.name.strip(), form.props())
            await db.commit()
    except (policies.PolicyError, InvalidAPIParams) as exc:
        problem = {"title": "The policy was not created", "msg": str(exc)}
        return await _policies_page(problem, form)
    return redirect(url_for("ui_limits.policies_page"), 303)  # type: ignore[return-value]


async def _policy_page(
    name: str, form: PolicyForm | None = None, problem: dict[str, str] | None = None
) -> Response:
    async with core().db() as db:
        row = await db.get(ResourcePolicy, name)
    if row is None:
        raise ObjectNotFound(f"there is no resource policy {name!r}")
    return await page(
        "admin_policy.html",
        400 if problem else 200,
        active="policies",
        counts=COUNTS,
        form=form or PolicyForm.of(row),
        problem=problem,
    )


@bp.get("/ui/admin/policies/<name>")
@hide
@browser
async def policy_page(name: str) -> Response:
    require_superadmin()  # policies span domains (as the GraphQL mutations)
    return await _policy_page(name)


@bp.post("/ui/admin/policies/<name>")
@hide
@browser
async def edit_policy(name: str) -> Response:
    require_superadmin()  # policies span domains (as the GraphQL mutations)
    form = await read_form(PolicyForm)
    try:
        async with core().db() as db:
            await policies.modify(db, name, form.props())
            await db.commit()
    except (policies.PolicyError, InvalidAPIParams) as exc:
        problem = {"title": "The policy was not changed", "msg": str(exc)}
        return await _policy_page(name, form.model_copy(update={"name": name}), problem)
    core().changed()  # a looser policy may let waiting sessions start
    return redirect(url_for("ui_limits.policies_page"), 303)  # type: ignore[return-value]


# --- resource presets -----------------------------------------------------------------------


class PresetForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=64)
    resource_slots: str = Field(default="", max_length=1024)
    shared_memory: str = Field(default="", max_length=32)


async def _presets_page(
    problem: dict[str, str] | None = None, form: PresetForm | None = None
) -> Response:
    listed: PresetList = await api(tenancy_api.list_presets)
    return await page(
        "admin_presets.html",
        400 if problem else 200,
        active="presets",
        presets=listed.presets,
        form=form or PresetForm(),
        problem=problem,
    )


@bp.get("/ui/admin/presets")
@hide
@browser
async def presets_page() -> Response:
    require_superadmin()  # as POST/DELETE /admin/presets
    return await _presets_page()


@bp.post("/ui/admin/presets")
@hide
@browser
async def create_preset() -> Response:
    require_superadmin()
    form = await read_form(PresetForm)
    try:
        data = form_as(
            CreatePreset,
            {
                "name": form.name.strip(),
                "resourceSlots": parse_slots(form.resource_slots),
                "sharedMemory": form.shared_memory.strip() or None,
            },
        )
        await api(tenancy_api.create_preset, data=data)
    except ControlPlaneError as exc:
        return await _presets_page({"title": "The preset was not created", "msg": exc.msg}, form)
    return redirect(url_for("ui_limits.presets_page"), 303)  # type: ignore[return-value]


@bp.post("/ui/admin/presets/<name>/delete")
@hide
@browser
async def delete_preset(name: str) -> Response:
    require_superadmin()
    await api(tenancy_api.delete_preset, name=name)
    return redirect(url_for("ui_limits.presets_page"), 303)  # type: ignore[return-value]
