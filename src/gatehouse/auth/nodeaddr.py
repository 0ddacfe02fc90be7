"""Where a node may say the proxy reaches it (pure): the address it called the auth from,
or an address in a network the admin allows (``auth_service.node_address_networks``, for
nodes behind NAT). Anything else would have the proxy dial, for users, an address the
node does not own (a metadata service, another host's port): an open relay.

Only IP addresses can be checked: the proxy would resolve a name anew on each dial.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from gatehouse._sys.hostport import split_host_port
from gatehouse.errors import AccessDenied, BadParameter

__all__ = ["IPAddress", "IPNetwork", "check_node_addrs", "source_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack listener sees an IPv4 caller as ::ffff:a.b.c.d.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def source_ip(remote: str) -> IPAddress | None:
    """The caller's IP from a remote address ("IP" or "host:port"); None if it has none."""
    ip = _ip(remote)
    if ip is None:
        try:
            ip = _ip(split_host_port(remote)[0])
        except BadParameter:
            return None
    return ip


def _refusal(nodename: str, addr: str, source: IPAddress | None, port: int) -> str:
    if source is None:
        return (f"node {nodename} may not advertise {addr}: its source address is unknown "
                "(an admin may add its network to auth_service.node_address_networks)")
    own = f"[{source}]:{port}" if source.version == 6 else f"{source}:{port}"
    return (f"node {nodename} may not advertise {addr}: it called from {source} "
            f"(set ssh_service.public_addr to {own}, or an admin adds its network to "
            "auth_service.node_address_networks)")


def check_node_addrs(nodename: str, addrs: Sequence[str], source: IPAddress | None,
                     allowed: Sequence[IPNetwork]) -> None:
    """AccessDenied, naming the first address refused and what would do instead, unless
    every address of node ``nodename`` is its source's IP or lies in an allowed network."""
    for addr in addrs:
        host, port = split_host_port(addr)
        ip = _ip(host)
        if ip is None:
            raise AccessDenied(
                f"node {nodename} may not advertise {addr}: a name cannot be checked against "
                "where the node called from; set ssh_service.public_addr to an IP address")
        if ip == source or any(ip in net for net in allowed):
            continue
        raise AccessDenied(_refusal(nodename, addr, source, port))
