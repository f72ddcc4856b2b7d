"""What every resolver shares: the request context, permission checks, scalars, list arguments.

Root resolvers open one database session, call the data functions REST handlers use, and
return plain dicts. The only field resolvers that read the database are the relations that
take arguments (KeyPair.compute_sessions, Agent.compute_containers), so that they cost nothing
unless selected; graphql-core resolves sibling fields concurrently, so each opens its own
database session and none is shared between resolvers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from ariadne import ScalarType
from graphql import GraphQLResolveInfo, StringValueNode, ValueNode

from controlplane import listing, tenancy
from controlplane.core import Core
from controlplane.db.models import Keypair
from controlplane.errors import InsufficientPrivilege


@dataclass(frozen=True)
class Context:
    core: Core
    requester: Keypair


Info: TypeAlias = "GraphQLResolveInfo[Context]"


def context(info: Info) -> Context:
    ctx = info.context
    assert isinstance(ctx, Context)
    return ctx


def admin_only(info: Info) -> Context:
    ctx = context(info)
    if not ctx.requester.is_admin:
        raise InsufficientPrivilege(f"{info.field_name} needs an admin keypair")
    return ctx


def superadmin_only(info: Info) -> Context:
    """Nodes and pools span domains: only a superadmin manages them (as in Backend.AI)."""
    ctx = admin_only(info)
    if tenancy.managed_domain(ctx.requester) is not None:
        raise InsufficientPrivilege(f"{info.field_name} needs a superadmin")
    return ctx


def admin_domain(ctx: Context, domain_name: str | None) -> str | None:
    """The domain an admin's listing covers: the one asked for, which a domain admin must
    manage, or its own; a superadmin's None covers every domain."""
    managed = tenancy.managed_domain(ctx.requester)
    if managed is None:
        return domain_name
    if domain_name not in (None, managed):
        raise InsufficientPrivilege(f"you manage the domain {managed!r} only")
    return managed


@dataclass(frozen=True)
class ListArgs:
    """The checked common arguments of a `*_list` query."""

    limit: int
    offset: int
    conditions: list[listing.Condition]
    orderings: list[listing.Ordering]


def list_args(
    limit: int,
    offset: int,
    filter: str | None,
    order: str | None,
    *,
    filter_fields: Collection[str],
    order_fields: Collection[str],
) -> ListArgs:
    limit, offset = listing.page_bounds(limit, offset)
    return ListArgs(
        limit,
        offset,
        listing.parse_filter(filter, filter_fields),
        listing.parse_order(order, order_fields),
    )


def split_csv(value: str | None) -> list[str] | None:
    """ "A,B" -> ["A", "B"]; None (no filter) for None or an empty string."""
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",") if part.strip()]
    return parts or None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- scalars -----------------------------------------------------------------------------------

uuid_scalar = ScalarType("UUID")
datetime_scalar = ScalarType("DateTime")
json_scalar = ScalarType("JSONString")
bigint_scalar = ScalarType("BigInt")


@uuid_scalar.serializer
def _serialize_uuid(value: Any) -> str:
    return str(value)


def _to_uuid(value: Any) -> uuid.UUID:
    try:
        parsed = uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    return parsed


uuid_scalar.set_value_parser(_to_uuid)


@uuid_scalar.literal_parser
def _parse_uuid_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> uuid.UUID:
    if not isinstance(node, StringValueNode):
        raise ValueError("a UUID is written as a string")
    return _to_uuid(node.value)


@datetime_scalar.serializer
def _serialize_datetime(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


@json_scalar.serializer
def _serialize_json(value: Any) -> str:
    """Backend.AI's JSONString: the value as a string holding JSON (a string passes as is)."""
    return value if isinstance(value, str) else json.dumps(value)


@json_scalar.value_parser
def _parse_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@bigint_scalar.serializer
def _serialize_bigint(value: Any) -> int:
    return int(value)


SCALARS = [uuid_scalar, datetime_scalar, json_scalar, bigint_scalar]
