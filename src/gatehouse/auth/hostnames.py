"""The names a host may put in its certificates (pure): a node's name, the addresses it
says it is reached at, and a proxy's TLS names."""

from __future__ import annotations

import ipaddress
import re

from gatehouse._sys.hostport import split_host_port
from gatehouse.errors import BadParameter
from gatehouse.types.resource import is_name

__all__ = ["check_host_names"]

_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def _is_host(name: str) -> bool:
    """An IP address or a plain DNS name (no wildcards or pattern characters)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return _HOST_RE.fullmatch(name) is not None
    return True


def check_host_names(cluster: str, role: str, nodename: str, addrs: list[str],
                     dns_names: list[str]) -> None:
    """Hosts do not choose arbitrary names for their certificates: no wildcards, no
    names reserved for ``cluster``'s own services (BadParameter otherwise)."""
    if not is_name(nodename):
        raise BadParameter(f"invalid node name {nodename!r}")
    for addr in addrs:
        host = split_host_port(addr)[0]
        if not _is_host(host):
            raise BadParameter(f"invalid address {addr!r}: expected an IP or a host name")
    for name in dns_names:
        # TLS compares names without case: so must this check.
        if not _is_host(name) or name.lower().endswith(f".{cluster.lower()}"):
            raise BadParameter(f"a {role} may not claim the name {name!r}")
