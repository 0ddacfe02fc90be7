"""One error hierarchy for Gatehouse; third-party errors are translated at the edges.

    GatehouseError                 anything Gatehouse reports to a person (one line)
    ├── NotFound                   a resource or item does not exist
    ├── AlreadyExists              create() of something that exists
    ├── CompareFailed              compare-and-swap lost a race / stale revision
    ├── AccessDenied               the caller may not do this (always audited)
    ├── BadParameter               malformed input: YAML, flags, field values
    ├── LimitExceeded              too many attempts, too big, locked
    └── ConnectionProblem          a peer is unreachable or broke the protocol

Each kind maps to one HTTP status so that the API client can raise the same kind
on the far side (see ``status`` and ``from_status``).
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "BadParameter",
    "CompareFailed",
    "ConnectionProblem",
    "GatehouseError",
    "LimitExceeded",
    "NotFound",
    "from_status",
]


class GatehouseError(Exception):
    """Base of every error Gatehouse raises on purpose; str() is one clear line."""

    status = 500


class NotFound(GatehouseError):
    status = 404


class AlreadyExists(GatehouseError):
    status = 409


class CompareFailed(GatehouseError):
    status = 412


class AccessDenied(GatehouseError):
    status = 403


class BadParameter(GatehouseError):
    status = 400


class LimitExceeded(GatehouseError):
    status = 429


class ConnectionProblem(GatehouseError):
    status = 502


_BY_STATUS: dict[int, type[GatehouseError]] = {
    cls.status: cls
    for cls in (NotFound, AlreadyExists, CompareFailed, AccessDenied, BadParameter,
                LimitExceeded, ConnectionProblem)
}
_BY_STATUS[401] = AccessDenied


def from_status(status: int, message: str) -> GatehouseError:
    """The error kind the API sends as ``status``, carrying the server's message."""
    return _BY_STATUS.get(status, GatehouseError)(message)
