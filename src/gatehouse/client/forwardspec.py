"""The spec of `gsh ssh -L`, as OpenSSH's ssh(1) -L reads it (pure, import-light:
parsed before the dial goes out).

``[bind_address:]port:host:hostport``, IPv6 addresses in square brackets. Without
a bind address the listener is on localhost only (OpenSSH's default, GatewayPorts
no); ``*`` or an empty one binds every address.
"""

from __future__ import annotations

from typing import NamedTuple

from gatehouse.errors import BadParameter

__all__ = ["LocalForward"]


class LocalForward(NamedTuple):  # a NamedTuple: a dataclass costs gsh's start-up ~1 ms
    listen_host: str  # "" = every address
    listen_port: int
    dest_host: str
    dest_port: int
    spec: str  # as given, for messages

    @classmethod
    def parse(cls, spec: str) -> LocalForward:
        """``[bind_address:]port:host:hostport`` (ssh(1) -L); BadParameter otherwise."""
        fields = _fields(spec)
        if fields is None or len(fields) not in (3, 4) or not fields[-2]:
            raise BadParameter(f"-L {spec!r}: expected [BIND:]PORT:HOST:HOSTPORT, "
                               "e.g. 8080:localhost:80")
        bind = fields[0] if len(fields) == 4 else "localhost"
        return cls(listen_host="" if bind in ("", "*") else bind,
                   listen_port=_port(spec, fields[-3]), dest_host=fields[-2],
                   dest_port=_port(spec, fields[-1]), spec=spec)


def _fields(spec: str) -> list[str] | None:
    """``spec`` split on colons, a bracketed field kept whole; None if malformed."""
    fields: list[str] = []
    at = 0
    while True:
        if spec.startswith("[", at):
            end = spec.find("]", at)
            if end < 0 or spec[end + 1:end + 2] not in ("", ":"):
                return None
            fields.append(spec[at + 1:end])
            at = end + 1
        else:
            end = spec.find(":", at)
            end = len(spec) if end < 0 else end
            fields.append(spec[at:end])
            at = end
        if at >= len(spec):
            return fields
        at += 1  # the colon


def _port(spec: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise BadParameter(f"-L {spec!r}: {text!r} is not a port from 1 to 65535")
    return int(text)
