"""Trusted-cluster helpers for the integration tests: join a leaf to a root for real."""

from __future__ import annotations

from .harness import Cluster, wait_for

ROOT = "sso.example.com"


def trusted_cluster_yaml(root: Cluster, token: str, role_map: str, *, enabled: bool = True,
                         proxy_addr: str = "") -> str:
    """A trusted_cluster resource; ``role_map`` is YAML list items, one per line."""
    rules = "".join(f"    - {line}\n" for line in role_map.strip().splitlines())
    return (
        "kind: trusted_cluster\nversion: v1\n"
        f"metadata: {{name: {root.name}}}\n"
        f"spec:\n  enabled: {'true' if enabled else 'false'}\n  token: {token}\n"
        f"  proxy_addr: {proxy_addr or root.proxy}\n  role_map:\n{rules}"
    )


def join(leaf: Cluster, root: Cluster, role_map: str, *, proxy_addr: str = "") -> str:
    """Join ``leaf`` to ``root`` with a fresh token; returns the resource text."""
    token = root.token("trusted_cluster")
    text = trusted_cluster_yaml(root, token, role_map, proxy_addr=proxy_addr)
    leaf.create(text).ok()
    wait_online(root, leaf.name)
    return text


def connection(root: Cluster, leaf: str) -> str:
    found = root.gatectl("get", f"rc/{leaf}", "--format=json")
    if found.rc != 0:
        return "absent"
    return str(found.json()[0]["status"]["connection"])


def wait_online(root: Cluster, leaf: str, timeout: float = 15.0) -> None:
    wait_for(f"{leaf} online at the root", lambda: connection(root, leaf) == "online",
             timeout=timeout)


def wait_offline(root: Cluster, leaf: str, timeout: float = 15.0) -> None:
    wait_for(f"{leaf} offline at the root", lambda: connection(root, leaf) != "online",
             timeout=timeout)
