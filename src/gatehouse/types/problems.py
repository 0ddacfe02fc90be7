"""A pydantic ValidationError as one line a person can act on: every problem (the first
MAX_SHOWN of them), each with its field's path, what was expected and what was given,
e.g. ``spec.allow: expected a mapping, got a list; spec.deny.logins: expected a list,
got 'root'``. The config, resource files and request bodies all say it this way."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails

__all__ = ["MAX_SHOWN", "describe_problems", "field_path"]

MAX_SHOWN = 10
# pydantic's error types -> what was expected, in words (others keep pydantic's message)
_EXPECTED = {
    "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list", "set_type": "a list",
    "string_type": "a string", "bool_type": "true or false", "bool_parsing": "true or false",
    "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "none_required": "no value here",
}
_CUT = 40  # characters of a value shown


def describe_problems(exc: ValidationError, *, noun: str = "field") -> str:
    """Every problem of ``exc`` on one line, separated by ``;`` (``noun``: what a key is
    called, in "unknown field spec.x")."""
    errors = exc.errors(include_url=False)
    parts = [_describe_one(error, noun) for error in errors[:MAX_SHOWN]]
    if len(errors) > MAX_SHOWN:
        more = len(errors) - MAX_SHOWN
        parts.append(f"and {more} more problem{'s' if more > 1 else ''}")
    return "; ".join(parts)


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("spec", "allow", "rules", 0)`` -> ``spec.allow.rules[0]``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _describe_one(error: ErrorDetails, noun: str) -> str:
    path, kind = field_path(error["loc"]), error["type"]
    if kind == "extra_forbidden":
        return f"unknown {noun} {path}"
    if kind == "missing":
        return f"missing {noun} {path}"
    if kind == "literal_error":
        text = f"expected {error.get('ctx', {}).get('expected', '?')}, got {_shown(error)}"
    elif kind in _EXPECTED:
        text = f"expected {_EXPECTED[kind]}, got {_shown(error)}"
    elif kind in ("value_error", "invalid"):  # our validators' messages quote the value
        text = error["msg"].removeprefix("Value error, ")
    else:
        text = f"{error['msg']}, got {_shown(error)}"
    return f"{path}: {text}" if path else text


def _shown(error: ErrorDetails) -> str:
    value = error.get("input")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    shown = repr(value)
    return shown if len(shown) <= _CUT else shown[:_CUT - 3] + "..."
