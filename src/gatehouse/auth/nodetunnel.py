"""Which hosts may hold a node tunnel on this cluster's proxies (pure).

A proxy accepts a tunnel from any certificate its cluster's host CA signed for a
node, then asks the auth; the auth keeps only the tunnels of registered nodes: a
removed node (``gatectl rm node/ID``) still holds a valid certificate until it
expires, and its tunnel must neither stay nor come back.
"""

from __future__ import annotations

from gatehouse.services.hosts import HostRecord

__all__ = ["tunnel_refusal"]


def tunnel_refusal(host_id: str, record: HostRecord | None) -> str:
    """Why ``host_id``, registered as ``record`` (None: not registered), may not hold a
    node tunnel; "" when it may."""
    if record is None:
        return f"host {host_id} is not a registered node of this cluster (removed?)"
    if record.role != "node":
        return f"host {host_id} is a {record.role}, not a node"
    return ""
