"""How gatectl shows resources, audit events and counts as text (pure: the API's JSON
objects in, table rows and lines out; common.print_table prints them).

Nested values are written as YAML flow text (``role_map: [{remote: access, local:
[access]}]``), the way they are written in the resource files, never as Python reprs;
empty ones are left out, and so is a field that repeats the name (a node's host_id).
Times are shown to the second, in UTC (``2026-01-02T03:04:05Z``). For reading, not
parsing: strings are not quoted (``--format=yaml`` is the form to parse).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["event_message", "event_rows", "flow", "plural", "resource_rows", "summary",
           "trust_line"]

# Spec fields a table leaves out: PEM blocks (`get ca --format=yaml` shows them), secrets.
HIDDEN_SPEC = frozenset({"tls_certs", "token"})


_EMPTY: tuple[object, ...] = (None, "", [], {})
_UTC_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|\+00:00)")


def _when(text: str | None) -> str:
    """An API timestamp in UTC to the second; any other text as it is."""
    found = _UTC_TIME.fullmatch(text or "")
    return f"{found[1]}Z" if found else (text or "")


def flow(value: object) -> str:
    """``value`` as YAML flow text on one line: ``[a, b]``, ``{k: v}``, ``true``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _when(value) if value else '""'
    return str(value)


def _pruned(value: object) -> object:
    """``value`` without its empty parts (``deny: {logins: []}`` says nothing)."""
    if isinstance(value, Mapping):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in _EMPTY}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def summary(fields: Mapping[str, Any], hidden: Iterable[str] = ()) -> str:
    """``key: value, ...`` for the fields with a value, as YAML flow text."""
    skip = set(hidden)
    kept = _pruned({k: v for k, v in fields.items() if k not in skip})
    assert isinstance(kept, dict)
    return ", ".join(f"{key}: {flow(value)}" for key, value in kept.items())


def plural(count: int, noun: str) -> str:
    """``1 node``, ``2 nodes``, ``0 nodes``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def resource_rows(items: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows for resources of one kind in their JSON form (yaml_io.to_json_obj);
    tokens get an Expires column."""
    expiring = any(i["kind"] == "token" for i in items)
    headers = ["Name", "Spec", *(["Expires"] if expiring else []), "Status"]
    rows = []
    for i in items:
        name = i["metadata"]["name"]
        spec = {k: v for k, v in (i.get("spec") or {}).items() if v != name}
        expires = [_when(i["metadata"].get("expires"))] if expiring else []
        rows.append([name, summary(spec, HIDDEN_SPEC), *expires,
                     summary(i.get("status") or {})])
    return headers, rows


def event_message(event: Mapping[str, Any]) -> str:
    """What an event says: its message, else the command it ran (exec, session.start),
    else its fields."""
    if event.get("message"):
        return str(event["message"])
    fields: Mapping[str, Any] = event.get("fields") or {}
    if event.get("event") in ("exec", "session.start"):
        return str(fields.get("command") or "interactive shell")
    return summary(fields)


def event_rows(events: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["Time", "Event", "Code", "Cluster", "User", "Login", "Node", "Message"]
    return headers, [[_when(e["time"]), e["event"], e["code"], e["cluster"], e["user"],
                      e["login"], e["node"], event_message(e)] for e in events]


def trust_line(status: Mapping[str, str]) -> str:
    """A trusted cluster's tunnel in a word, and why when it is down."""
    if status["connection"] == "offline":
        return f"tunnel DOWN: {status.get('detail') or 'no reason known'}"
    return "tunnel up" if status["connection"] == "online" else "disabled"
