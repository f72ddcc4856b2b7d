"""Typed requests and responses: the JSON body and the query string are validated into pydantic
models before a handler runs, and a handler returns a model that is sent as JSON by its aliases
(the wire names). The decorators also record the models where quart-schema's OpenAPI generator
reads them, so /openapi.json is built from the very types that validate the traffic.

Why not quart-schema's own `validate_request`: Backend.AI clients send JSON bodies on GET and
DELETE and label empty bodies `text/plain` (docs/backendai-api.md §2.2-2.3), and hostile JSON
must be refused before it reaches anything recursive; so the body is read here, with a depth
limit and without the NaN/Infinity extensions of Python's json module.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from quart import Response, has_websocket_context, request, websocket
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
    QUART_SCHEMA_RESPONSE_ATTRIBUTE,
    DataSource,
)

from controlplane.errors import InvalidAPIParams

MAX_DEPTH = 32  # the deepest real body (a GraphQL variable object) is far shallower
P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes | str) -> Any:
    """A JSON document no deeper than MAX_DEPTH, or InvalidAPIParams saying what is wrong."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise InvalidAPIParams(f"JSON nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # also bad UTF-8 and integers of more than 4300 digits
        raise InvalidAPIParams(f"Malformed JSON body: {exc}") from exc
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise InvalidAPIParams(f"JSON nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
    return value


def field_errors(error: ValidationError) -> dict[str, str]:
    """Each wrong field (dotted path) and what is wrong with it."""
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        fields[where] = f"{fields[where]}; {message}" if where in fields else message
    return fields


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidAPIParams("Input validation error", data=field_errors(exc)) from exc


async def read_body(model: type[M]) -> M:
    """The request's JSON body (also on GET; {} when empty) as `model`."""
    raw = await request.get_data()
    return validate(model, parse_json(raw) if raw.strip() else {})


def read_query(model: type[M]) -> M:
    """The query string (of a request or a WebSocket upgrade) as `model`."""
    args = websocket.args if has_websocket_context() else request.args
    flat = {key: values[0] if len(values) == 1 else values for key, values in args.lists()}
    return validate(model, flat)


def body(model: type[M]) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Validate the JSON body into `model` and pass it to the handler as `data`."""

    def decorate(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            return await view(*args, data=await read_body(model), **kwargs)

        setattr(wrapper, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model, DataSource.JSON))
        return wrapper

    return decorate


def query(model: type[M]) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Validate the query string into `model` and pass it to the handler as `args`."""

    def decorate(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            return await view(*args, args=read_query(model), **kwargs)

        setattr(wrapper, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, model)
        return wrapper

    return decorate


def returns(
    model: Any, status: int = 200
) -> Callable[[Callable[P, Awaitable[BaseModel]]], Callable[P, Awaitable[Response]]]:
    """Send the handler's model as JSON with `status`; `model` (a model class or a union of
    them) is what /openapi.json says this route answers."""

    def decorate(view: Callable[P, Awaitable[BaseModel]]) -> Callable[P, Awaitable[Response]]:
        @wraps(view)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            result = await view(*args, **kwargs)
            return json_response(result, status)

        schemas: dict[int, Any] = dict(getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {}))
        schemas[status] = (model, None)
        setattr(wrapper, QUART_SCHEMA_RESPONSE_ATTRIBUTE, schemas)
        return wrapper

    return decorate


def json_response(result: BaseModel, status: int = 200) -> Response:
    return Response(
        result.model_dump_json(by_alias=True), status=status, content_type="application/json"
    )


class ServerSentEvents:
    """Marks a route that answers text/event-stream (see `documented`)."""


class TarArchives:
    """Marks a route that answers multipart/mixed, one tar archive per part (see `documented`)."""


def documented(
    responses: Mapping[int, Any], *, multipart: type[BaseModel] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record for /openapi.json what a handler reads and builds itself: answers (None for an
    empty body, ServerSentEvents for a stream) and a multipart body."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        schemas: dict[int, Any] = dict(getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {}))
        schemas.update({code: (model, None) for code, model in responses.items()})
        setattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, schemas)
        if multipart is not None:  # read by the handler itself (file parts)
            setattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, (multipart, DataSource.FORM_MULTIPART))
        return view

    return decorate


# --- the model bases ----------------------------------------------------------------------------


class Request(BaseModel):
    """A body or query of Shipyard's own routes: exact types (a boolean is `true`/`false`, never
    `"false"`), and an unknown key is an error rather than a silently ignored typo."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class CompatRequest(BaseModel):
    """A body of a Backend.AI route: exact types too, but unknown keys are ignored, because the
    official client sends many the manager ignores (dependencies, callback_url, ...)."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class Query(BaseModel):
    """A query string: every value arrives as text, so booleans are read from true/false/1/0 and
    anything else is refused."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Reply(BaseModel):
    """A response body: snake_case in Python, camelCase on the wire (Backend.AI's keys) unless a
    field names its alias."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )
