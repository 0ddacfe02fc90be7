"""Network addresses as text: "host:port", IPv6 hosts in brackets (pure, import-light:
the client's hot path uses it)."""

from __future__ import annotations

import errno

from gatehouse.errors import BadParameter

__all__ = ["dial_addr", "listen_error", "split_host_port"]

# Hosts a listener binds to mean "every address"; no one can dial them.
_WILDCARDS = ("0.0.0.0", "::")


def split_host_port(addr: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 hosts in brackets) as ``(host, port)``; BadParameter otherwise."""
    host, sep, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise BadParameter(f"invalid address {addr!r}: put an IPv6 host in brackets, '[::1]:3022'")
    if not sep or not host or any(c.isspace() or c in "/[]" for c in host):
        raise BadParameter(f"invalid address {addr!r}: expected host:port")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise BadParameter(f"invalid address {addr!r}: port must be a number from 1 to 65535")
    return host, int(port)


def dial_addr(listen_addr: str) -> str:
    """Where a client on this host reaches a listener: a wildcard host (``0.0.0.0``,
    ``[::]``) becomes ``127.0.0.1``; any other address is dialed as it is."""
    host, port = split_host_port(listen_addr)
    if host in _WILDCARDS:
        return f"127.0.0.1:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_error(key: str, addr: str, exc: OSError) -> BadParameter:
    """The one line for a listener (its config key, e.g. ``proxy_service.listen_addr``)
    that cannot bind ``addr``, with what to do."""
    if exc.errno == errno.EADDRINUSE:
        return BadParameter(f"{key} {addr} is already in use: is another gatehouse running? "
                            f"Stop it, or set {key} to a free port")
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EACCES:
        reason += " (ports below 1024 need root)"
    return BadParameter(f"cannot listen on {addr} ({key}): {reason}")
