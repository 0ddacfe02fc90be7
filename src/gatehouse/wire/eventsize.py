"""How large an audit event a host (or a leaf) reports may be, and how one past that is
cut to fit: an event is never dropped for its size, or a long enough command would hide
from the audit log. Its message and its largest fields keep their head, and
``fields["truncated"]`` names each one cut with its original length (pure)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_FIELDS", "MAX_MESSAGE", "bound_event", "fields_size"]

MAX_MESSAGE = 2000  # characters of an event's message
MAX_FIELDS = 8192  # characters of an event's fields, as JSON


def fields_size(fields: object) -> int:
    """The size that MAX_FIELDS bounds: the length of the fields' JSON."""
    return len(json.dumps(fields))


def bound_event(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (an event as JSON) if its message and fields are within MAX_MESSAGE and
    MAX_FIELDS; else a copy with both cut to fit. A value of the wrong type is left as it
    is, for the receiver to refuse."""
    message, fields = record.get("message", ""), record.get("fields", {})
    if not isinstance(message, str) or not isinstance(fields, dict):
        return record
    if len(message) <= MAX_MESSAGE and fields_size(fields) <= MAX_FIELDS:
        return record
    cut: dict[str, int] = {}
    if len(message) > MAX_MESSAGE:
        cut["message"] = len(message)
        message = message[:MAX_MESSAGE]
    return {**record, "message": message, "fields": _cut_fields(fields, cut)}


def _cut_fields(fields: dict[str, Any], cut: dict[str, int]) -> dict[str, Any]:
    """``fields`` with its largest values cut (a value that is not a string becomes the
    head of its JSON) until it fits in MAX_FIELDS with ``truncated`` (``cut``) added."""
    out = {name: value for name, value in fields.items() if name != "truncated"}
    out["truncated"] = cut
    for name in sorted(out, key=lambda n: fields_size(out[n]), reverse=True):
        if fields_size(out) <= MAX_FIELDS:
            return out
        if name == "truncated":
            continue
        value = out[name]
        text = value if isinstance(value, str) else json.dumps(value)
        cut[name] = len(text)
        out[name] = ""
        room = MAX_FIELDS - fields_size(out)
        if room > 0:
            out[name] = _head(text, room)
    if fields_size(out) <= MAX_FIELDS:
        return out
    # Many small fields: their names alone are past the bound.
    return {"truncated": {"fields": fields_size(fields)}}


def _head(text: str, room: int) -> str:
    """The longest head of ``text`` whose JSON (less its quotes) fits in ``room``; a
    longer head never takes less, so a binary search finds it."""
    fits, past = 0, min(len(text), room) + 1
    while past - fits > 1:
        mid = (fits + past) // 2
        if fields_size(text[:mid]) - 2 <= room:
            fits = mid
        else:
            past = mid
    return text[:fits]
