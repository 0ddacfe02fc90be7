"""The specs of `gsh ssh -L` and `-R`, as OpenSSH's ssh(1) reads them (pure,
import-light: parsed before the dial goes out).

``[bind_address:]port:host:hostport``, IPv6 addresses in square brackets. For -L,
without a bind address the listener is on localhost only (OpenSSH's default,
GatewayPorts no); ``*`` or an empty one binds every address. For -R the node
listens (on its loopback whatever is asked: see node.remoteforward), and port 0
asks it for any free port, as ssh(1) -R does.
"""

from __future__ import annotations

from typing import NamedTuple

from gatehouse.errors import BadParameter

__all__ = ["PortForward"]


class PortForward(NamedTuple):  # a NamedTuple: a dataclass costs gsh's start-up ~1 ms
    """-L: listen here, connect from the node; -R: listen on the node, connect from here."""

    remote: bool  # -R
    listen_host: str  # "" = every address (-L), the node's choice (-R)
    listen_port: int  # 0 (-R only): any free port, which the node reports
    dest_host: str
    dest_port: int
    spec: str  # as given, for messages

    @property
    def flag(self) -> str:
        return "-R" if self.remote else "-L"

    @classmethod
    def parse(cls, spec: str, *, remote: bool = False) -> PortForward:
        """``[bind_address:]port:host:hostport`` (ssh(1) -L and -R); BadParameter
        otherwise."""
        flag = "-R" if remote else "-L"
        fields = _fields(spec)
        if fields is None or len(fields) not in (3, 4) or not fields[-2]:
            raise BadParameter(f"{flag} {spec!r}: expected [BIND:]PORT:HOST:HOSTPORT, "
                               "e.g. 8080:localhost:80")
        bind = fields[0] if len(fields) == 4 else ("" if remote else "localhost")
        return cls(remote=remote, listen_host="" if bind in ("", "*") else bind,
                   listen_port=_port(flag, spec, fields[-3], lowest=0 if remote else 1),
                   dest_host=fields[-2], dest_port=_port(flag, spec, fields[-1]), spec=spec)


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


def _port(flag: str, spec: str, text: str, lowest: int = 1) -> int:
    if not (text.isascii() and text.isdigit()) or not lowest <= int(text) <= 65535:
        raise BadParameter(f"{flag} {spec!r}: {text!r} is not a port from {lowest} to 65535")
    return int(text)
