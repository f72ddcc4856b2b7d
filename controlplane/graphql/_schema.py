"""The executable schema: schema.graphql (the SDL, schema-first) bound to the resolvers."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

from ariadne import graphql, load_schema_from_path, make_executable_schema
from graphql import GraphQLError, GraphQLSchema

from controlplane.core import Core
from controlplane.db.models import Keypair
from controlplane.errors import ControlPlaneError
from controlplane.graphql import (
    _agents,
    _images,
    _keypairs,
    _limits,
    _policies,
    _presets,
    _sessions,
    _tenancy,
    _users,
    _vfolders,
)
from controlplane.graphql._common import SCALARS, Context

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
log = logging.getLogger("controlplane.graphql")


@cache
def schema() -> GraphQLSchema:
    return make_executable_schema(
        load_schema_from_path(SCHEMA_PATH),
        *SCALARS,
        _sessions.query,
        _agents.query,
        _agents.agent_type,
        _agents.mutation,
        _images.query,
        _images.mutation,
        _keypairs.query,
        _keypairs.keypair_type,
        _users.query,
        _tenancy.query,
        _policies.query,
        _presets.query,
        _presets.mutation,
        _presets.session_type,
        _vfolders.query,
        _policies.mutation,
    )


def _format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """Backend.AI's client prints each error's `message` (and its path); a domain error says
    what is wrong, anything else is a bug and says only that."""
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if isinstance(original, ControlPlaneError):
        formatted["message"] = f"{original.title} {original.msg}".strip()
        formatted["extensions"] = {"type": original.slug, "status": original.status}
    elif _is_bug(error):
        formatted["message"] = "Internal server error."
    return formatted


def _is_bug(error: GraphQLError) -> bool:
    """A resolver failed with something other than a domain error (bad variables and queries
    fail outside resolvers, with messages meant for the client)."""
    original = error.original_error
    return (
        original is not None
        and error.path is not None
        and not isinstance(original, ControlPlaneError | GraphQLError)
    )


class _ErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """ariadne logs every error with a traceback; only unexpected ones deserve that."""

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        if isinstance(msg, GraphQLError) and _is_bug(msg):
            self.logger.error("GraphQL resolver failed: %s", msg, exc_info=msg.original_error)
        else:
            self.logger.debug("GraphQL error: %s", msg)


async def execute(
    core: Core,
    requester: Keypair,
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
) -> dict[str, Any]:
    """Run one GraphQL request; the result is {"data": ...} plus "errors" when something failed
    (a query over the limits of `_limits`, or running past its time), always to be sent with
    status 200."""
    body = {"query": query, "variables": variables, "operationName": operation_name}
    _, result = await graphql(
        schema(),
        body,
        context_value=Context(core, requester),
        error_formatter=_format_error,
        logger=_ErrorLog(log, {}),
        query_parser=_limits.parse,
        query_validator=_limits.validate,
        middleware=[_limits.deadline()],
    )
    return dict(result)
