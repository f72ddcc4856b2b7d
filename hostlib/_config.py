"""One loader for every TOML file Shipyard reads (controlplane.toml, node.toml, the installer's
answers): the file's table is validated against a typed model (a pydantic dataclass), and an
unknown key, a wrong type or a missing value becomes one `ConfigError` whose message names the
file, the key and what was expected:

    node.toml: key "cpu": expected a number, got "two"

TOML values are already typed, so validation is strict (no "8081" for a port, no 1 for true),
except that a path is written as a string.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import tomli_w
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

T = TypeVar("T")

# pydantic's error types -> what the key should have been, said the TOML way
_EXPECTED = {
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a table",
    "list_type": "an array",
}


class ConfigError(Exception):
    """A configuration file cannot be used; str() is one line for a person."""


def parse_config(text: str, model: type[T], *, source: str) -> T:
    """`text` (TOML) as a `model`; ConfigError naming `source` and every bad key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    # JSON mode is what makes strict validation accept a string for a Path; TOML's values
    # are JSON's, plus dates, which none of our settings are (they arrive as strings and fail)
    try:
        return TypeAdapter(model).validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        problems = [_describe(error, model) for error in exc.errors()]
        raise ConfigError(f"{source}: {'; '.join(problems)}") from None


def load_config(path: Path, model: type[T]) -> T:
    """The file at `path` as a `model`; ConfigError when it cannot be read or is wrong."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read it: {reason}") from None
    return parse_config(text, model, source=str(path))


def render_config(config: Any) -> str:
    """`config` as TOML; settings that are None (meaning "not set") are left out."""
    data = TypeAdapter(type(config)).dump_python(config, mode="json", exclude_none=True)
    return tomli_w.dumps(data)


def dump_config(config: Any, path: Path, mode: int = 0o600) -> None:
    """Write `config` to `path` as TOML, readable by its owner only unless `mode` says more."""
    path.write_text(render_config(config))
    path.chmod(mode)


def _describe(error: ErrorDetails, model: type[Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = [f.name for f in fields(model)] if is_dataclass(model) else []
        close = difflib.get_close_matches(key, known, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        return f'unknown key "{key}"{hint}'
    if kind in ("missing", "missing_argument"):
        return f'key "{key}" is required'
    if kind == "literal_error":
        expected = f"one of {error.get('ctx', {}).get('expected', '')}"
    else:
        expected = _EXPECTED.get(kind) or error["msg"].removeprefix("Input should be ")
    where = f'key "{key}"' if key else "the file"
    return f"{where}: expected {expected}, got {_shown(error['input'])}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return json.dumps(value)
